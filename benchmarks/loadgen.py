"""A lean HTTP/1.1 load generator on raw asyncio sockets.

The server and the load share two cores, so the client must cost as little as possible per
request: bodies are built before the clock starts, each connection is kept alive, and a response
is read by its Content-Length without a general HTTP parser.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    ok: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_request(host: str, port: int, path: str, body: bytes, write_key: str) -> bytes:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Basic {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _worker(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                  requests: list[bytes], result: LoadResult) -> None:
    reader, writer = connection
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies.append(time.perf_counter() - started)
            result.requests += 1
            if status == 200:
                result.ok += 1
            else:
                result.errors[status] = result.errors.get(status, 0) + 1
    finally:
        writer.close()


def run_load(host: str, port: int, requests: list[bytes], connections: int) -> LoadResult:
    """Send all requests over ``connections`` keep-alive connections; time the whole run.

    The connections are opened one by one, a moment apart, before the clock starts, as clients
    arrive over time. Opened all at once, they all went to whichever of several server processes
    sharing the port woke first (one took 80 % of the load in a run with two)."""
    result = LoadResult()
    shares = [requests[i::connections] for i in range(connections)]

    async def main() -> None:
        opened = []
        for _ in shares:
            opened.append(await asyncio.open_connection(host, port))
            await asyncio.sleep(0.02)
        started = time.perf_counter()
        await asyncio.gather(*(_worker(c, share, result) for c, share in zip(opened, shares)))
        result.seconds = time.perf_counter() - started

    asyncio.run(main())
    return result
