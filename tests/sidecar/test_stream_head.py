"""When a relayed stream's head reaches the agent (stream_relay.py): with its first event
when the upstream sends that right behind the head, on its own when the upstream is slow
to send any event (the agent is never left without the head until the first token)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.sidecar.conftest import SidecarFactory, Standins, base_policy
from tests.sidecar.raw_upstream import Exchange, raw_upstream
from tests.sidecar.test_upstream_faults import GET, with_raw

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
EVENTS = b"data: one\n\ndata: two\n\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def dechunk(body: bytes) -> bytes:
    """The data of a chunked body (up to its last chunk)."""
    data = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        data += body[:size]
        body = body[size + 2 :]
    return data


async def test_the_head_reaches_the_agent_before_a_slow_first_event(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    head_seen = asyncio.Event()

    async def answer(ex: Exchange) -> None:
        ex.writer.write(HEAD)
        await ex.writer.drain()
        # No event until the agent has the head: a head held for the first event would
        # never reach it (the wait below would time out).
        await asyncio.wait_for(head_seen.wait(), 10)
        ex.writer.write(chunk(EVENTS) + b"0\r\n\r\n")

    async with raw_upstream(answer) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        host, port = sc.sidecar.addresses["explicit"]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(GET)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            head_seen.set()
            rest = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    assert dechunk(rest) == EVENTS


async def test_a_burst_arrives_whole_and_in_order(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """Head and a burst of events in one upstream write: the agent gets them all, the head
    first, byte for byte (the first event may travel with the head, the rest after)."""

    async def answer(ex: Exchange) -> None:
        ex.writer.write(HEAD + chunk(EVENTS) + b"0\r\n\r\n")

    async with raw_upstream(answer) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        host, port = sc.sidecar.addresses["explicit"]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(GET)
            await writer.drain()
            answer_bytes = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
    head, _, body = answer_bytes.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert dechunk(body) == EVENTS


async def test_a_head_request_to_a_stream_gets_the_head_alone(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """HEAD of an SSE resource: the head, no body, and the connection still usable."""

    async def answer(ex: Exchange) -> None:
        ex.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")

    async with raw_upstream(answer) as up:
        doc: dict[str, Any] = base_policy(standins)
        doc["spec"]["upstreams"].append(
            {"name": "raw", "url": f"http://127.0.0.1:{up.port}", "kind": "http"}
        )
        doc["spec"]["tools"]["rules"].append(
            {"name": "raw-head", "action": "allow", "kind": "http", "methods": ["HEAD"]}
        )
        sc = await sidecar_factory()
        sc.write_policy(doc)
        await sc.sidecar.watcher.check()
        host, port = sc.sidecar.addresses["explicit"]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = GET.replace(b"GET ", b"HEAD ", 1).replace(b"Connection: close\r\n", b"")
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(request)  # the same connection carries the next request
            await writer.drain()
            again = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    assert again.startswith(b"HTTP/1.1 200")
