"""What kube-proxy does for the `kubernetes` Service, for the local node's pods: the API server
listens on 127.0.0.1 only, which inside a pod's network namespace is the pod itself, so the node
forwards <gateway>:443 to it, byte for byte (TLS passes through: pods verify the API server's
certificate, which is valid for the gateway address, and log in with their own tokens). Pods find
it through KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (pod_env.py)."""

import asyncio
import logging

API_SERVICE_PORT = 443

log = logging.getLogger(__name__)


async def serve_api_proxy(
    listen_host: str, target_port: int, *, listen_port: int = API_SERVICE_PORT, target_host: str = "127.0.0.1"
) -> asyncio.Server:
    """Listening on listen_host:listen_port until the returned server is closed."""

    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as error:
            log.info("api proxy: %s:%s unreachable: %s", target_host, target_port, error)
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
        finally:
            for writer in (client_writer, server_writer):
                writer.close()

    return await asyncio.start_server(forward, listen_host, listen_port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on (a half close, as TCP allows)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:  # a reset: closing this side ends the other direction's read too
        writer.close()
