"""The sidecar forwarding to an upstream that misbehaves (tests/sidecar/raw_upstream.py):
what the upstream receives, what the agent gets back, and how faults are answered and
audited (upstream_pool.py is the sidecar's upstream leg)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.sidecar.conftest import Running, SidecarFactory, Standins, base_policy
from tests.sidecar.raw_upstream import OK_HI, Exchange, RawUpstream, raw_upstream, send


async def raw_call(sc: Running, request: bytes) -> bytes:
    """One request on its own connection to the explicit port; the whole answer."""
    host, port = sc.sidecar.addresses["explicit"]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def with_raw(sidecar_factory: SidecarFactory, standins: Standins, up: RawUpstream) -> Running:
    doc: dict[str, Any] = base_policy(standins)
    doc["spec"]["upstreams"].append(
        {"name": "raw", "url": f"http://127.0.0.1:{up.port}", "kind": "http"}
    )
    sc = await sidecar_factory()
    sc.write_policy(doc)
    await sc.sidecar.watcher.check()
    return sc


GET = b"GET /raw/items?b=2&a=1 HTTP/1.1\r\nHost: sidecar\r\nX-Agent: 1\r\nConnection: close\r\n\r\n"


async def test_the_upstream_receives_the_decided_request_and_nothing_else(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    async with raw_upstream(send(OK_HI)) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        answer = await raw_call(sc, GET)
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\nhi")
        (raw,) = up.requests
        assert raw == (
            b"GET /items?b=2&a=1 HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{up.port}\r\n".encode()
            + b"X-Agent: 1\r\n\r\n"
        )


async def test_chunked_and_close_delimited_answers_reach_the_agent(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    async def answer(ex: Exchange) -> None:
        if ex.index == 0:
            ex.writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
            )
        else:
            ex.writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            await ex.writer.drain()
            ex.writer.close()

    async with raw_upstream(answer) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        first = await raw_call(sc, GET)
        second = await raw_call(sc, GET)
    assert first.startswith(b"HTTP/1.1 200") and b"hello" in first and b" world" in first
    assert b"X-T" not in first
    assert second.startswith(b"HTTP/1.1 200") and b"until the end" in second


async def test_a_malformed_answer_is_a_typed_502_and_audited(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi"
    async with raw_upstream(send(bad)) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        answer = await raw_call(sc, GET)
    assert answer.startswith(b"HTTP/1.1 502")
    error = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "upstream_unreachable" and "framed" in error["message"]
    for _ in range(200):
        outcomes = [r for r in sc.audit.records if r.phase == "outcome"]
        if outcomes:
            break
        await asyncio.sleep(0.01)
    assert outcomes and outcomes[-1].to_dict()["code"] == "upstream_unreachable"


async def test_a_protocol_switch_is_refused(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    async with raw_upstream(send(switch)) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        answer = await raw_call(sc, GET)
    assert answer.startswith(b"HTTP/1.1 502") and b"upstream_unreachable" in answer


async def test_a_post_on_a_stale_keep_alive_connection_is_not_repeated(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    """A POST the upstream may have run is never sent twice: the agent gets a typed 502
    (its SDK may retry as a new governed call); a GET on a stale connection is retried."""

    async def close_second(ex: Exchange) -> None:
        if ex.conn == 0 and ex.index == 1:
            ex.writer.close()  # closed under the sidecar's feet, nothing answered
            return
        ex.writer.write(OK_HI)

    post = (
        b"POST /raw/items HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    async with raw_upstream(close_second) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        assert (await raw_call(sc, post)).startswith(b"HTTP/1.1 200")
        answer = await raw_call(sc, post)
        assert answer.startswith(b"HTTP/1.1 502") and b"upstream_unreachable" in answer
        assert (await raw_call(sc, post)).startswith(b"HTTP/1.1 200")  # a new connection
    assert [e.conn for e in up.exchanges] == [0, 0, 1]
    assert len(up.requests) == 3 and up.requests[1].endswith(b"\r\n\r\nabc")
    async with raw_upstream(close_second) as up:
        sc = await with_raw(sidecar_factory, standins, up)
        assert (await raw_call(sc, GET)).startswith(b"HTTP/1.1 200")
        assert (await raw_call(sc, GET)).startswith(b"HTTP/1.1 200")
    assert [e.conn for e in up.exchanges] == [0, 0, 1]
    assert up.requests[1] == up.requests[2]
