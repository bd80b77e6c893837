#!/usr/bin/env python3
"""A bare trio byte pump in front of PostgreSQL: the floor for any trio + pyOpenSSL gateway.

    python bench/pg_pump.py LISTEN_PORT BACKEND_PORT CERT KEY

Answers SSLRequest with 'S', terminates TLS with the gateway's own TLSStream, and copies bytes
both ways without parsing anything. bench/pg_bench.py runs it beside the real gateway so the
cost of parsing, policy, masking and recording shows as the gap between the two.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.tls import TLSStream, server_context  # noqa: E402


async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
    while data := await src.receive_some(65536):
        await dst.send_all(data)


async def handle(client: trio.SocketStream, backend_port: int, ctx: object) -> None:
    request = await client.receive_some(8)
    if request != b"\x00\x00\x00\x08\x04\xd2\x16\x2f":
        await client.aclose()
        return
    await client.send_all(b"S")
    tls = TLSStream.server(client, ctx)  # type: ignore[arg-type]
    backend = await trio.open_tcp_stream("127.0.0.1", backend_port)
    async with backend:
        async with trio.open_nursery() as nursery:
            async def up() -> None:
                await pump(tls, backend)
                nursery.cancel_scope.cancel()

            async def down() -> None:
                await pump(backend, tls)
                nursery.cancel_scope.cancel()

            nursery.start_soon(up)
            nursery.start_soon(down)


async def main(port: int, backend_port: int, cert: str, key: str) -> None:
    ctx = server_context(cert, key)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await handle(stream, backend_port, ctx)
        except Exception:
            pass

    print("pump ready", flush=True)
    await trio.serve_tcp(handler, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
