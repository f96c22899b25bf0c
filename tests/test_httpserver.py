"""nurture.web.httpserver: malformed requests log one line per kind; slow clients are cut off."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp import web

from nurture.web.httpserver import runner_options


@pytest.fixture
async def server():
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, **runner_options("tracker", keepalive=0.5))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][:2]
    await runner.cleanup()


async def raw(addr, data: bytes, *, wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), timeout=wait)
    finally:
        writer.close()


async def test_malformed_requests_log_one_line_per_kind_without_traceback(server, caplog):
    caplog.set_level(logging.DEBUG, logger="nurture.http")
    bad = [b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",          # invalid header line
           b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",               # request line too long
           b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",                           # bad version
           b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40]  # TLS to a plain port
    for _ in range(25):
        for data in bad:
            answer = await raw(server, data)
            assert answer == b"" or answer.split(b" ", 2)[1] == b"400"
    records = [r for r in caplog.records if r.name == "nurture.http"]
    kinds = [r.getMessage().split(": ")[2] for r in records]
    assert records and len(records) == len(set(kinds)) <= len(bad), [r.getMessage() for r in records]
    assert all(not r.exc_info for r in records)
    assert all("malformed HTTP request from 127.0.0.1" in r.getMessage() for r in records)
    assert (await raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).endswith(b"ok")


async def test_partial_headers_and_idle_connections_are_closed(server):
    started = time.monotonic()
    answer = await raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=5.0)  # never finishes its head
    assert answer == b"" and time.monotonic() - started < 2.0
    reader, writer = await asyncio.open_connection(*server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"ok")
    assert head.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), timeout=5.0) == b""  # the idle keep-alive ends
    assert time.monotonic() - started < 2.0
    writer.close()
