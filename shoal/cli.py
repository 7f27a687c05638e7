"""The `shoal` command. Subcommand modules only declare flags at import; heavy imports (torch) wait
inside their run(), so `shoal generate` and `--help` stay quick."""

import argparse
import importlib

# subcommand -> (module with add_arguments and run, help)
SUBCOMMANDS = {
    "runtime": ("shoal.runtime.cli", "serve a model over gRPC (the engine every pool pod runs)"),
    "generate": ("shoal.runtime.client", "stream one completion from a runtime"),
    "router": ("shoal.router.cli", "serve the OpenAI-compatible API in front of runtime pools"),
    "operator": ("shoal.operator.cli", "reconcile ModelPools into runtime pods and router routes (Kubernetes)"),
    "dev": ("shoal.router.dev", "run a runtime on the embedded model and the router in front of it (local use)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoal", description="Shoal: LLM serving pools on Kubernetes.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return args.run(args)
