"""The "agent": runs every attempt from inside the pod namespace under the agent's UID.

Each attempt reports whether it *reached* its target: a governed call reached the stand-in
and got its answer; a bypass attempt reached a canary (``CANARY`` greeting, UDP echo, ping
reply, the admin text). Prints one JSON list. Every network operation is bounded by
``TIMEOUT`` seconds, so the whole run is bounded.

Usage: python -m tests.netns.agent --haltgate-ca FILE --upstream-ca FILE [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

TIMEOUT = 3.0
MAX_READ = 256 * 1024

NAMED_V4, NAMED_V6 = "10.77.0.1", "fd77::1"
OTHER_V4, OTHER_V6 = "10.77.0.9", "fd77::9"
POD_V4 = "10.77.0.2"


@dataclass
class Outcome:
    reached: bool
    detail: str


def _read_all(sock: socket.socket | ssl.SSLSocket, until: bytes | None = None) -> bytes:
    """Read to EOF (bounded), or only until ``until`` shows up."""
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while len(data) < MAX_READ and time.monotonic() < deadline:
        if until is not None and until in data:
            break
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _connect(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=TIMEOUT)


def http_raw(
    host: str,
    port: int,
    request: bytes,
    *,
    tls: ssl.SSLContext | None = None,
    sni: str | None = None,
) -> bytes:
    """Send one raw request (``Connection: close``) and return the whole raw response."""
    sock: socket.socket | ssl.SSLSocket = _connect(host, port)
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=sni)
        sock.sendall(request)
        return _read_all(sock)
    finally:
        sock.close()


def request_bytes(
    method: str,
    path: str,
    host_header: str,
    body: bytes = b"",
    content_type: str = "application/json",
) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Accept: application/json, text/event-stream\r\n\r\n"
    )
    return head.encode() + body


def status_of(response: bytes) -> int:
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def _summary(response: bytes) -> str:
    first = response.split(b"\r\n", 1)[0][:80].decode("latin-1")
    return first or f"{len(response)} bytes"


def _error(e: BaseException) -> Outcome:
    return Outcome(False, f"{type(e).__name__}: {e}"[:160])


class Attempts:
    def __init__(self, haltgate_ca: str, upstream_ca: str) -> None:
        self.trust_haltgate = ssl.create_default_context(cafile=haltgate_ca)
        self.trust_upstream = ssl.create_default_context(cafile=upstream_ca)
        self.no_verify = ssl.create_default_context()
        self.no_verify.check_hostname = False
        self.no_verify.verify_mode = ssl.CERT_NONE

    # ------------------------------------------------------------------ governed

    def llm_https_inspected(self) -> Outcome:
        body = json.dumps(
            {
                "model": "gpt-4o-mini",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "hello there"}],
            }
        ).encode()
        resp = http_raw(
            "llm.test",
            443,
            request_bytes("POST", "/v1/chat/completions", "llm.test", body),
            tls=self.trust_haltgate,
            sni="llm.test",
        )
        return Outcome(status_of(resp) == 200 and b'"choices"' in resp, _summary(resp))

    def llm_https_streaming(self) -> Outcome:
        body = json.dumps(
            {
                "model": "gpt-4o-mini",
                "max_tokens": 4,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
        ).encode()
        resp = http_raw(
            "llm.test",
            443,
            request_bytes("POST", "/v1/chat/completions", "llm.test", body),
            tls=self.trust_haltgate,
            sni="llm.test",
        )
        return Outcome(status_of(resp) == 200 and b"data: [DONE]" in resp, _summary(resp))

    def llm_https_ipv6(self) -> Outcome:
        body = json.dumps(
            {
                "model": "gpt-4o-mini",
                "max_tokens": 2,
                "messages": [{"role": "user", "content": "v6"}],
            }
        ).encode()
        resp = http_raw(
            NAMED_V6,
            443,
            request_bytes("POST", "/v1/chat/completions", "llm.test", body),
            tls=self.trust_haltgate,
            sni="llm.test",
        )
        return Outcome(status_of(resp) == 200 and b'"choices"' in resp, _summary(resp))

    def llm_https_fragmented_hello(self) -> Outcome:
        """A slow client: the ClientHello arrives in three pieces, 50 ms apart."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.trust_haltgate.wrap_bio(incoming, outgoing, server_hostname="llm.test")
        with _connect("llm.test", 443) as sock:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            hello = outgoing.read()
            third = len(hello) // 3
            for part in (hello[:third], hello[third : 2 * third], hello[2 * third :]):
                sock.sendall(part)
                time.sleep(0.05)
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    if not data:
                        return Outcome(False, "closed during the handshake")
                    incoming.write(data)
            sock.sendall(outgoing.read())
            body = json.dumps(
                {
                    "model": "gpt-4o-mini",
                    "max_tokens": 2,
                    "messages": [{"role": "user", "content": "slow"}],
                }
            ).encode()
            tls.write(request_bytes("POST", "/v1/chat/completions", "llm.test", body))
            sock.sendall(outgoing.read())
            response = b""
            closed = False
            # The status line is enough: the handshake already proved the minted leaf.
            while not closed and b"\r\n" not in response and time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                incoming.write(data)
                # Drain every record buffered so far; the server's close_notify ends it.
                for _ in range(1000):
                    try:
                        response += tls.read(65536)
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:
                        closed = True
                        break
        return Outcome(status_of(response) == 200, _summary(response))

    def explicit_alias_call(self) -> Outcome:
        """Explicit mode: a base URL pointing at the sidecar's 17000 alias path."""
        resp = http_raw("127.0.0.1", 17000, request_bytes("GET", "/api/items", "127.0.0.1"))
        return Outcome(status_of(resp) == 200, _summary(resp))

    def explicit_self_view(self) -> Outcome:
        """The agent's read-only view of its own run, on the port it may reach (no token)."""
        resp = http_raw("127.0.0.1", 17000, request_bytes("GET", "/haltgate/v1/self", "127.0.0.1"))
        return Outcome(status_of(resp) == 200 and b'"budget"' in resp, _summary(resp))

    def explicit_connect_denied_host(self) -> Outcome:
        """Explicit mode: CONNECT through the sidecar to a host the policy does not know."""
        try:
            resp = http_raw(
                "127.0.0.1", 17000, b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n"
            )
        except OSError as e:
            return _error(e)
        return Outcome(status_of(resp) == 200, _summary(resp))

    def llm_https_after_attempts(self) -> Outcome:
        """The listener still serves after every bypass attempt above."""
        return self.llm_https_inspected()

    def mcp_plain_http(self) -> Outcome:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
        resp = http_raw("mcp.test", 80, request_bytes("POST", "/mcp", "mcp.test", body))
        return Outcome(status_of(resp) == 200 and b'"tools"' in resp, _summary(resp))

    def api_plain_http(self) -> Outcome:
        resp = http_raw("api.test", 8080, request_bytes("GET", "/items", "api.test:8080"))
        return Outcome(status_of(resp) == 200, _summary(resp))

    def tls_passthrough(self) -> Outcome:
        resp = http_raw(
            "vault.test",
            8443,
            request_bytes("GET", "/items", "vault.test:8443"),
            tls=self.trust_upstream,
            sni="vault.test",
        )
        return Outcome(status_of(resp) == 200, _summary(resp))

    def dns_configured_resolver(self) -> Outcome:
        return self._udp(NAMED_V4, 53, b"RESOLVER")

    def dns_configured_resolver_v6(self) -> Outcome:
        return self._udp(NAMED_V6, 53, b"RESOLVER")

    # ------------------------------------------------------------------ bypass attempts

    def direct_ip_http(self) -> Outcome:
        return self._canary_http(OTHER_V4, 80, OTHER_V4)

    def direct_ip_spoofed_host(self) -> Outcome:
        return self._canary_http(OTHER_V4, 80, "mcp.test")

    def other_port_tcp(self) -> Outcome:
        return self._canary_tcp(OTHER_V4, 2222, b"hello\r\n")

    def ipv6_direct_http(self) -> Outcome:
        return self._canary_http(OTHER_V6, 80, f"[{OTHER_V6}]")

    def ipv6_other_port_tcp(self) -> Outcome:
        return self._canary_tcp(OTHER_V6, 2222, b"hello\r\n")

    def silent_client_server_first(self) -> Outcome:
        return self._canary_tcp(OTHER_V4, 2222, b"")

    def udp_other_host(self) -> Outcome:
        return self._udp(OTHER_V4, 9999, b"CANARY")

    def udp_ipv6(self) -> Outcome:
        return self._udp(OTHER_V6, 9999, b"CANARY")

    def dns_other_resolver(self) -> Outcome:
        return self._udp(OTHER_V4, 53, b"CANARY")

    def dns_other_resolver_v6(self) -> Outcome:
        return self._udp(OTHER_V6, 53, b"CANARY")

    def dns_other_resolver_tcp(self) -> Outcome:
        return self._canary_tcp(OTHER_V4, 53, b"\x00\x1c")

    def icmp_ping(self) -> Outcome:
        return self._ping(socket.AF_INET, OTHER_V4)

    def icmp_ping_v6(self) -> Outcome:
        return self._ping(socket.AF_INET6, OTHER_V6)

    def tls_unallowed_host(self) -> Outcome:
        return self._canary_tls(OTHER_V4, 443, "evil.test")

    def tls_without_sni(self) -> Outcome:
        return self._canary_tls(OTHER_V4, 443, None)

    def tls_allowed_sni_other_ip(self) -> Outcome:
        return self._canary_tls(OTHER_V4, 443, "llm.test")

    def tls_passthrough_sni_other_ip(self) -> Outcome:
        return self._canary_tls(OTHER_V4, 8443, "vault.test")

    def tls_sni_host_mismatch(self) -> Outcome:
        try:
            resp = http_raw(
                "llm.test",
                443,
                request_bytes("GET", "/items", "api.test:8080"),
                tls=self.trust_haltgate,
                sni="llm.test",
            )
        except (OSError, ssl.SSLError) as e:
            return _error(e)
        return Outcome(status_of(resp) == 200, _summary(resp))

    def connect_to_denied_host(self) -> Outcome:
        try:
            resp = http_raw(
                OTHER_V4, 80, b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n"
            )
        except OSError as e:
            return _error(e)
        return Outcome(b"CANARY" in resp or status_of(resp) == 200, _summary(resp))

    # The admin API answers 401 without a token (or ADMIN in the forwarder stand-in); nothing
    # else in the pod answers 401, so either proves the agent reached the admin port.
    def transparent_connect_allowed_host(self) -> Outcome:
        """CONNECT sent over a redirected connection, even to an allowed host, is refused."""
        try:
            resp = http_raw(
                "mcp.test", 80, b"CONNECT mcp.test:80 HTTP/1.1\r\nHost: mcp.test\r\n\r\n"
            )
        except OSError as e:
            return _error(e)
        return Outcome(status_of(resp) == 200, _summary(resp))

    def admin_port_loopback(self) -> Outcome:
        return self._admin("127.0.0.1", 17020, "/status")

    def admin_port_loopback_v6(self) -> Outcome:
        return self._admin("::1", 17020, "/status")

    def admin_port_pod_ip(self) -> Outcome:
        return self._admin(POD_V4, 17020, "/status")

    def metrics_port_loopback(self) -> Outcome:
        return self._admin("127.0.0.1", 17090, "/metrics")

    def transparent_port_direct(self) -> Outcome:
        try:
            resp = http_raw("127.0.0.1", 17001, request_bytes("GET", "/items", "api.test:8080"))
        except OSError as e:
            return _error(e)
        return Outcome(status_of(resp) == 200, _summary(resp))

    # ------------------------------------------------------------------ helpers

    def _canary_http(self, host: str, port: int, host_header: str) -> Outcome:
        try:
            resp = http_raw(host, port, request_bytes("GET", "/", host_header))
        except OSError as e:
            return _error(e)
        return Outcome(b"CANARY" in resp, _summary(resp))

    def _canary_tcp(self, host: str, port: int, first: bytes) -> Outcome:
        try:
            with _connect(host, port) as sock:
                if first:
                    sock.sendall(first)
                data = _read_all(sock, until=b"CANARY")
        except OSError as e:
            return _error(e)
        return Outcome(b"CANARY" in data, _summary(data))

    def _canary_tls(self, host: str, port: int, sni: str | None) -> Outcome:
        try:
            with (
                _connect(host, port) as raw,
                self.no_verify.wrap_socket(raw, server_hostname=sni) as sock,
            ):
                data = _read_all(sock, until=b"CANARY")
        except (OSError, ssl.SSLError) as e:
            return _error(e)
        return Outcome(b"CANARY" in data, _summary(data))

    def _admin(self, host: str, port: int, path: str) -> Outcome:
        try:
            resp = http_raw(host, port, request_bytes("GET", path, host))
        except OSError as e:
            return _error(e)
        reached = (
            b"ADMIN" in resp or b"METRICS" in resp or b"# HELP" in resp or status_of(resp) == 401
        )
        return Outcome(reached, _summary(resp))

    def _udp(self, host: str, port: int, expect: bytes) -> Outcome:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.sendto(b"query", (host, port))
                data, _ = sock.recvfrom(2048)
        except OSError as e:
            return _error(e)
        return Outcome(data.startswith(expect), data[:40].decode("latin-1"))

    def _ping(self, family: socket.AddressFamily, host: str) -> Outcome:
        proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
        kind = 8 if family == socket.AF_INET else 128
        packet = struct.pack("!BBHHH", kind, 0, 0, 0, 1) + b"haltgate"
        try:
            with socket.socket(family, socket.SOCK_DGRAM, proto) as sock:
                sock.settimeout(1.0)  # a reply on a veth takes well under a millisecond
                sock.sendto(packet, (host, 0))
                data, _ = sock.recvfrom(2048)
        except OSError as e:
            return _error(e)
        return Outcome(bool(data), f"echo reply, {len(data)} bytes")

    # ------------------------------------------------------------------ the HTTP server
    # Not bypass attempts: how the sidecar's HTTP server answers on a redirected connection
    # (run by name; the detail names the server that answered a parser-level refusal).

    def wire_plain_pipelined(self) -> Outcome:
        """Two pipelined requests on one redirected connection: both answered, in order."""
        first = request_bytes("GET", "/items", "api.test:8080").replace(
            b"Connection: close", b"Connection: keep-alive"
        )
        second = request_bytes("GET", "/items", "api.test:8080")
        resp = http_raw("api.test", 8080, first + second)
        statuses = re.findall(rb"HTTP/1\.[01] (\d{3}) ", resp)
        return Outcome(statuses == [b"200", b"200"], b",".join(statuses).decode())

    @staticmethod
    def _answered_by(resp: bytes) -> str:
        head = resp.partition(b"\r\n\r\n")[0].lower()
        if b" 400 " in head and b"x-haltgate-code: malformed_request" in head:
            return "llhttp"
        if b" 400 " in head and b"text/plain" in head and b"aiohttp" in head:
            return "aiohttp"
        return _summary(resp)

    def _smuggle(self, host: str, port: int, tls: ssl.SSLContext | None) -> Outcome:
        authority = f"{host}:{port}" if port not in (80, 443) else host
        data = (
            f"POST /items HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 4\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            f"GET /items/smuggled HTTP/1.1\r\nHost: {authority}\r\n\r\n"
        ).encode()
        resp = http_raw(host, port, data, tls=tls, sni=host if tls is not None else None)
        return Outcome(b" 200 " in resp, self._answered_by(resp))

    def wire_plain_smuggle(self) -> Outcome:
        return self._smuggle("api.test", 8080, None)

    def wire_inspected_smuggle(self) -> Outcome:
        return self._smuggle("llm.test", 443, self.trust_haltgate)


WIRE = ["wire_plain_pipelined", "wire_plain_smuggle", "wire_inspected_smuggle"]

GOVERNED = [
    "llm_https_inspected",
    "llm_https_streaming",
    "llm_https_ipv6",
    "llm_https_fragmented_hello",
    "mcp_plain_http",
    "api_plain_http",
    "tls_passthrough",
    "dns_configured_resolver",
    "dns_configured_resolver_v6",
]
BYPASS = [
    "direct_ip_http",
    "direct_ip_spoofed_host",
    "other_port_tcp",
    "ipv6_direct_http",
    "ipv6_other_port_tcp",
    "silent_client_server_first",
    "udp_other_host",
    "udp_ipv6",
    "dns_other_resolver",
    "dns_other_resolver_v6",
    "dns_other_resolver_tcp",
    "icmp_ping",
    "icmp_ping_v6",
    "tls_unallowed_host",
    "tls_without_sni",
    "tls_allowed_sni_other_ip",
    "tls_passthrough_sni_other_ip",
    "tls_sni_host_mismatch",
    "connect_to_denied_host",
    "transparent_connect_allowed_host",
    "admin_port_loopback",
    "admin_port_loopback_v6",
    "admin_port_pod_ip",
    "metrics_port_loopback",
    "transparent_port_direct",
]
LAST = ["llm_https_after_attempts"]
# Only with the real sidecar (the forwarder stand-in has no explicit port).
EXPLICIT_GOVERNED = ["explicit_alias_call", "explicit_self_view"]
EXPLICIT_BYPASS = ["explicit_connect_denied_host"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--haltgate-ca", required=True)
    parser.add_argument("--upstream-ca", required=True)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--explicit", action="store_true", help="also explicit-mode attempts")
    args = parser.parse_args()
    attempts = Attempts(args.haltgate_ca, args.upstream_ca)
    results = []
    names = GOVERNED + BYPASS + (EXPLICIT_GOVERNED + EXPLICIT_BYPASS if args.explicit else [])
    for name in args.only or names + LAST:
        fn: Callable[[], Outcome] = getattr(attempts, name)
        started = time.monotonic()
        try:
            outcome = fn()
        except Exception as e:  # an attempt that crashes did not reach anything
            outcome = _error(e)
        results.append(
            {
                "name": name,
                "reached": outcome.reached,
                "detail": outcome.detail,
                "seconds": round(time.monotonic() - started, 3),
                "uid": os.getuid(),
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
