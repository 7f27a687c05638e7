"""`shoal router` flags: a config file, and overrides of where it listens."""

import argparse
import asyncio
import dataclasses
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="router config (YAML or JSON); see router/examples/local.yaml")
    parser.add_argument("--host", default=None, help="override listen.host (the OpenAI API)")
    parser.add_argument("--port", type=int, default=None, help="override listen.port")
    parser.add_argument("--admin-port", type=int, default=None, help="override admin.port")
    parser.add_argument("--grpc-port", type=int, default=None, help="override grpc.port")
    parser.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds to let requests finish on SIGTERM")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def load(args: argparse.Namespace):
    """The config file with the flags' overrides applied; raises ConfigError."""
    from shoal.router.config import load_config

    config = load_config(args.config)
    listen = config.listen
    if args.host is not None or args.port is not None:
        listen = dataclasses.replace(
            listen, host=args.host or listen.host, port=listen.port if args.port is None else args.port
        )
    admin = config.admin if args.admin_port is None else dataclasses.replace(config.admin, port=args.admin_port)
    grpc = config.grpc
    if grpc is not None and args.grpc_port is not None:
        grpc = dataclasses.replace(grpc, port=args.grpc_port)
    return dataclasses.replace(config, listen=listen, admin=admin, grpc=grpc)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from shoal.router.config import ConfigError
    from shoal.router.serve import serve

    try:
        config = load(args)
    except ConfigError as error:
        raise SystemExit(f"shoal router: {args.config}: {error}") from None
    try:
        asyncio.run(serve(config, args.shutdown_grace))
    except OSError as error:  # a port in use, say
        raise SystemExit(f"shoal router: {error}") from None
    return 0
