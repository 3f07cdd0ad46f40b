"""How the demo's steps talk to the machine: its typed error, the console, subprocesses,
HTTP calls without a proxy and bounded waits."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click


class DemoError(Exception):
    """A step of the demo did not do what it should: the demo exits 1 with this message."""


@dataclass
class Console:
    """Progress output: numbered steps, indented details, a timer."""

    total: int
    started: float = field(default_factory=time.monotonic)
    number: int = 0

    def step(self, title: str) -> None:
        self.number += 1
        click.secho(f"\n[{self.number}/{self.total}] {title}", bold=True)

    def info(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            click.echo(f"    {line}")

    def ok(self, text: str) -> None:
        click.secho(f"    ✔ {text}", fg="green")

    def refused(self, text: str) -> None:
        click.secho(f"    ✘ {text}", fg="red")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def repo_root() -> Path:
    """The source checkout (crds/, docs/examples/, hack/build-binaries) of an editable install."""
    here = Path(__file__).resolve()
    for parent in [*here.parents, Path.cwd()]:
        if (parent / "hack" / "build-binaries").is_file() and (parent / "crds").is_dir():
            return parent
    raise DemoError(
        "haltgate demo runs from a source checkout (it applies crds/ and "
        "docs/examples/): clone the repository and run `make demo`"
    )


def haltgate_exe() -> str:
    exe = Path(sys.executable).parent / "haltgate"
    return str(exe) if exe.exists() else "haltgate"


def clean_env() -> dict[str, str]:
    # A proxy of the machine must not catch the demo's loopback traffic.
    return {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }


def run_checked(
    argv: list[str], *, timeout: float = 60, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env or clean_env(), check=False
    )
    if check and res.returncode != 0:
        raise DemoError(
            f"{' '.join(argv[:4])} ... exited {res.returncode}:\n"
            f"{(res.stderr or res.stdout).strip()[-2000:]}"
        )
    return res


def http_call(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP call without any proxy; returns status, headers, decoded JSON (or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        return status, {k.lower(): v for k, v in hdrs.items()}, json.loads(raw)
    except ValueError:
        return status, {k.lower(): v for k, v in hdrs.items()}, raw.decode(errors="replace")


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> Any:
    """Poll ``check`` (bounded in time) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            result = check()
            if result:
                return result
        if alive is not None and not alive():
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise DemoError(f"{what}: the process exited\n{tail}")
        time.sleep(0.2)
    raise DemoError(f"{what}: not ready after {timeout:.0f}s")


def own_path(uid: int, path: Path, mode: int) -> None:
    os.chown(path, uid, uid)
    path.chmod(mode)


def probe_port(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
