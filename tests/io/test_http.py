"""The /metrics and /healthz endpoint, on a real socket."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from mailbridge.io.http import HttpServer


async def _request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def test_metrics_health_and_errors() -> None:
    """/metrics serves the registry, /healthz follows readiness, the rest is refused."""

    async def scenario() -> None:
        registry = CollectorRegistry()
        Counter("mailbridge_demo", "A counter.", registry=registry).inc(3)
        ready = False
        server = HttpServer("127.0.0.1", 0, registry,
                            lambda: None if ready else "starting")
        await server.start()
        try:
            metrics = await _request(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert metrics.startswith(b"HTTP/1.1 200 OK")
            assert b"mailbridge_demo_total 3.0" in metrics
            starting = await _request(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
            assert starting.startswith(b"HTTP/1.1 503") and starting.endswith(b"starting\n")
            ready = True
            healthy = await _request(server.port, b"GET /healthz?probe=1 HTTP/1.0\r\n\r\n")
            assert healthy.startswith(b"HTTP/1.1 200") and healthy.endswith(b"\r\n\r\nok\n")
            head = await _request(server.port, b"HEAD /healthz HTTP/1.0\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
            assert (await _request(server.port, b"GET /admin HTTP/1.0\r\n\r\n")
                    ).startswith(b"HTTP/1.1 404")
            assert (await _request(server.port, b"POST /metrics HTTP/1.0\r\n\r\n")
                    ).startswith(b"HTTP/1.1 405")
            assert (await _request(server.port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")
        finally:
            await server.close()

    asyncio.run(scenario())
