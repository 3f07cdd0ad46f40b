"""The node agent's probes: ``/readyz`` once it has listed its node's pods, ``/healthz``
while its loop turns and its pod watch is alive (plain HTTP, for the kubelet)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STALE_SECONDS = 60.0
"""A loop that has not turned for this long is stuck: /healthz fails, the kubelet restarts."""


class Health:
    """What the main loop reports; read by the probe server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._synced = False
        self._beat = time.monotonic()
        self._watch_alive = True

    def beat(self, *, synced: bool, watch_alive: bool) -> None:
        with self._lock:
            self._beat = time.monotonic()
            self._synced = self._synced or synced
            self._watch_alive = watch_alive

    def healthy(self) -> bool:
        with self._lock:
            return self._healthy_locked()

    def ready(self) -> bool:
        with self._lock:
            return self._synced and self._healthy_locked()

    def _healthy_locked(self) -> bool:
        return self._watch_alive and time.monotonic() - self._beat < STALE_SECONDS


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the probe server in a daemon thread; returns it (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks = {"/healthz": health.healthy, "/readyz": health.ready}
            check = checks.get(self.path)
            if check is None:
                self.send_error(404)
                return
            ok = check()
            body = b"ok\n" if ok else b"not ok\n"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds are not news

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="haltgate-probes", daemon=True).start()
    return server
