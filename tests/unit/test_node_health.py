"""The node agent's probes: not ready before its first pod list, unhealthy when its pod
watch died or its loop stopped turning."""

from __future__ import annotations

import urllib.error
import urllib.request

from haltgate.cli import node_health
from haltgate.testbed.process import free_port


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_probes_follow_the_loop() -> None:
    health = node_health.Health()
    port = free_port()
    server = node_health.serve(health, "127.0.0.1", port)
    try:
        assert (status(port, "/healthz"), status(port, "/readyz")) == (200, 503)
        health.beat(synced=True, watch_alive=True)
        assert (status(port, "/healthz"), status(port, "/readyz")) == (200, 200)
        health.beat(synced=False, watch_alive=True)  # ready stays ready after the first list
        assert status(port, "/readyz") == 200
        health.beat(synced=True, watch_alive=False)
        assert (status(port, "/healthz"), status(port, "/readyz")) == (503, 503)
        health.beat(synced=True, watch_alive=True)
        health._beat -= node_health.STALE_SECONDS + 1  # a loop stuck for a minute
        assert status(port, "/healthz") == 503
        assert status(port, "/other") == 404
    finally:
        server.shutdown()
        server.server_close()
