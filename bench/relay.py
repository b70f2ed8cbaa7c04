"""A TCP relay that makes a loopback upstream look distant.

Each direction is delayed by `--delay-ms` (one-way), so a round trip costs
twice that.  The kernel here has no netem, so the TCP handshake itself is
emulated too: bytes from a new client reach the upstream no earlier than one
round trip after the connection was accepted plus the one-way delay — as if
SYN/SYN-ACK had crossed the same distance.  Order within a direction is kept.

    python -m bench.relay --port 9443 --target-port 8443 --delay-ms 25
"""

from __future__ import annotations

import argparse
import asyncio


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, not_before: float
) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                writer.write_eof() if writer.can_write_eof() else writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((max(loop.time() + delay, not_before), chunk))
            if not chunk:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
    finally:
        writer.close()


async def _serve(port: int, target_port: int, delay: float) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = asyncio.get_running_loop().time()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pump(reader, up_writer, delay, accepted + 3 * delay),
            _pump(up_reader, writer, delay, 0.0),
            return_exceptions=True,
        )

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=25.0)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.target_port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
