"""Bad input: each a typed error, nothing forwarded, and the sidecar keeps serving."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from haltgate.sidecar.pipeline_state import PipelineSettings
from tests.sidecar.conftest import SidecarFactory, Standins

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


async def still_serving(base: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(base + "/llm/v1/chat/completions", json=CHAT) as r,
    ):
        assert r.status == 200


def host_port(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def exchange(base: str, data: bytes, *, wait: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection(*host_port(base))
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(wait):
            return await reader.read(65536)
    finally:
        writer.close()


async def test_invalid_json(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory()
    async with aiohttp.ClientSession() as s:
        for raw, code in (
            (b"{", "invalid_json"),
            (b"", "invalid_json"),
            (b"[1,2]", "invalid_request"),
            (b'{"model": 5}', "invalid_request"),
            (b'{"model":"m","max_tokens":-1}', "invalid_request"),
        ):
            async with s.post(sc.explicit + "/llm/v1/chat/completions", data=raw) as r:
                assert r.status == 400, raw
                error = (await r.json())["error"]
                assert (error["type"], error["code"]) == ("invalid_request", code), raw
    assert not standins.received("llm").requests
    await still_serving(sc.explicit)


async def test_oversized_body(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory({"spec": {"limits": {"maxBodyBytes": 2048}}})
    big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]})
    async with aiohttp.ClientSession() as s:
        async with s.post(sc.explicit + "/llm/v1/chat/completions", data=big) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "body_too_large"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(8):
                yield b" " * 512

        async with s.post(sc.explicit + "/api/echo/x", data=chunks()) as r:
            assert r.status == 413
    assert not standins.received("llm").requests
    assert not standins.received("api").requests
    await still_serving(sc.explicit)


async def test_malformed_http(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    for garbage in (
        b"\x16\x03\x01\x00\xff garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"POST /llm/v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        answer = await exchange(sc.explicit, garbage)
        # Framing errors are answered by aiohttp itself (plain text 400), before any
        # request exists to govern; nothing is forwarded.
        assert answer == b"" or answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer
    await still_serving(sc.explicit)


async def test_slow_client_body(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory(pipeline=PipelineSettings(client_body_timeout=0.3))
    head = (
        b'POST /llm/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model"'
    )
    answer = await exchange(sc.explicit, head)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"code":"client_timeout"' in answer
    assert not standins.received("llm").requests
    await still_serving(sc.explicit)


async def test_client_disconnect_mid_stream(sidecar_factory: SidecarFactory) -> None:
    sc = await sidecar_factory()
    body = orjson.dumps({**CHAT, "max_tokens": 500, "stream": True})
    reader, writer = await asyncio.open_connection(*host_port(sc.explicit))
    writer.write(
        b"POST /llm/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    await writer.drain()
    async with asyncio.timeout(5):
        await reader.read(100)
    writer.close()
    await still_serving(sc.explicit)


async def test_connect_refusals(sidecar_factory: SidecarFactory, standins: Standins) -> None:
    sc = await sidecar_factory()
    answer = await exchange(
        sc.explicit, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 403")
    assert b'"code":"connect_denied"' in answer
    # The LLM stand-in is an inspect upstream; without a CA nothing can be inspected.
    host, port = host_port(standins.llm)
    answer = await exchange(sc.explicit, f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403")
    assert b'"code":"tls_inspection_unavailable"' in answer
    answer = await exchange(sc.explicit, b"CONNECT nonsense HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    await still_serving(sc.explicit)


async def test_connect_passthrough_tunnel(
    sidecar_factory: SidecarFactory, standins: Standins
) -> None:
    sc = await sidecar_factory(
        {
            "spec": {
                "upstreams": [
                    {"name": "llm", "url": standins.llm, "kind": "llm", "provider": "openai"},
                    {"name": "api", "url": standins.api, "kind": "http", "tls": "passthrough"},
                ]
            }
        }
    )
    host, port = host_port(standins.api)
    reader, writer = await asyncio.open_connection(*host_port(sc.explicit))
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        # Whatever goes through the tunnel is the agent's business (here: plain HTTP).
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
    for _ in range(100):
        records = [r for r in sc.audit.records if r.phase == "connection"]
        if len(records) == 2:
            break
        await asyncio.sleep(0.02)
    opened, closed = records
    assert opened.kind == closed.kind == "connection"
    assert closed.payload is not None and closed.payload["bytes_down"] == len(answer)
