#!/usr/bin/env python3
"""A TLS-terminating proxy, as an operator puts in front of `brief serve`.

usage: tls_proxy.py PORT UPSTREAM_PORT CERT KEY
Accepts TLS on 127.0.0.1:PORT with CERT/KEY and relays the plain bytes to
127.0.0.1:UPSTREAM_PORT. Prints READY when listening; exits when stdin closes.
"""
import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main():
    port, upstream = int(sys.argv[1]), int(sys.argv[2])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[3], sys.argv[4])

    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
