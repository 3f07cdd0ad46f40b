"""What monitor mode (``spec.enforcement: monitor``) costs per call, through a real sidecar.

Run: ``.venv/bin/python bench/monitor_mode.py [--calls N] [--rounds N]``

One sidecar process-in-process (the same ``Sidecar`` the tests start) on loopback in front
of the stand-in HTTP API, memory audit sink, a calls budget high enough never to refuse.
Four cases, interleaved round by round so the shared machine's drift hits all alike:

- ``enforce allow``: a call every control allows, the policy in enforce mode;
- ``monitor allow``: the same call, the policy in monitor mode (the allow path's extra
  checks);
- ``monitor would-refuse``: a call the tool rules deny, in monitor mode: noted, counted,
  audited with ``would_refuse``, forwarded;
- ``enforce refuse``: that call in enforce mode (refused, for comparison).

Printed: the median and p90 of the sidecar's own time per call (``x-haltgate-overhead-ms``,
upstream excluded) over every round, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from haltgate.governance.audit import MemoryAuditSink
from haltgate.sidecar.server import Sidecar
from haltgate.sidecar.startup import Listen, SidecarSettings
from haltgate.testbed.standins import RECORDED, http_api, serve


def policy(api: str, mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "haltgate.dev/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": f"bench-{mode}", "namespace": "bench"},
        "spec": {
            "enforcement": mode,
            "upstreams": [{"name": "api", "url": api, "kind": "http"}],
            "budgets": {"calls": {"limit": 10_000_000}},
            "tools": {
                "default": "deny",
                "rules": [{"name": "read", "action": "allow", "kind": "http", "methods": ["GET"]}],
            },
        },
    }


async def start(api: str, mode: str, tmp: Path) -> tuple[Sidecar, str]:
    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(policy(api, mode)))
    sidecar = Sidecar(
        SidecarSettings(
            policy_path=path,
            admin_token_file=None,
            state_dir=tmp / f"state-{mode}",
            explicit=Listen("127.0.0.1", 0),
            admin=Listen("127.0.0.1", 0),
            metrics=Listen("127.0.0.1", 0),
        ),
        audit=MemoryAuditSink(),
    )
    await sidecar.start()
    host, port = sidecar.addresses["explicit"]
    return sidecar, f"http://{host}:{port}/api/echo/x"


async def main(calls: int, rounds: int) -> None:
    app = http_api.create_app()
    app[RECORDED].enabled = False
    runner, api = await serve(app)
    with tempfile.TemporaryDirectory() as tmp:
        enforce, e_url = await start(api, "enforce", Path(tmp))
        monitor, m_url = await start(api, "monitor", Path(tmp))
        cases = {
            "enforce allow": ("GET", e_url),
            "monitor allow": ("GET", m_url),
            "monitor would-refuse": ("DELETE", m_url),
            "enforce refuse": ("DELETE", e_url),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        async with aiohttp.ClientSession() as s:
            for _ in range(rounds):
                for name, (method, url) in cases.items():
                    for _ in range(calls):
                        async with s.request(method, url) as r:
                            await r.read()
                            times[name].append(float(r.headers["x-haltgate-overhead-ms"]) * 1000)
        await enforce.stop()
        await monitor.stop()
    await runner.cleanup()
    print(f"{'case':<22} {'median us':>10} {'p90 us':>8}  (sidecar's own time per call)")
    for name, values in times.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        print(f"{name:<22} {statistics.median(values):>10.0f} {p90:>8.0f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200, help="calls per case and round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    asyncio.run(main(args.calls, args.rounds))
