"""Loading the policy file, and reloading it when it changes (a mounted ConfigMap).

Kubernetes updates a mounted ConfigMap by swapping a ``..data`` symlink to a new directory,
so inotify on the file itself misses updates. The watcher polls ``os.stat`` of the path
(which follows the symlinks) every ``interval`` seconds and compares inode, device, size
and mtime: one system call per second, nothing on the request path. A changed file is
read, validated and compiled; if anything fails, the previous policy stays in force and the
errors (with field paths) are kept for ``GET /status``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haltgate.governance.policy import GovernancePolicy
from haltgate.governance.validation import (
    Issue,
    PolicyFileError,
    policy_from_bytes,
    read_policy_file,
)
from haltgate.sidecar.controls import Controls, compile_controls

__all__ = ["PolicyStatus", "PolicyWatcher", "load_controls"]

log = logging.getLogger("haltgate.sidecar.policy")


def _stat_key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def load_controls(path: Path) -> tuple[Controls, GovernancePolicy]:
    """Read, validate and compile the policy file. Raises :class:`PolicyFileError`."""
    source = str(path)
    data = read_policy_file(path)
    policy = policy_from_bytes(data, source)
    try:
        controls = compile_controls(policy.spec, data)
    except Exception as e:  # a pattern or detector that validation let through
        raise PolicyFileError(source, [Issue("spec", f"cannot compile: {e}")]) from e
    return controls, policy


@dataclass(slots=True)
class PolicyStatus:
    """What ``GET /status`` says about the policy."""

    path: str
    digest: str = ""
    name: str = ""
    generation: int | None = None
    loaded_at: float = 0.0
    reloads: int = 0
    last_error: list[str] = field(default_factory=list)
    last_error_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "digest": self.digest,
            "name": self.name,
            "generation": self.generation,
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "valid": not self.last_error,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


class PolicyWatcher:
    """Polls the policy file; calls ``apply(controls)`` with each valid new version.

    ``on_tick`` (optional) runs after every poll, changed file or not: for sources the
    policy names but that change on their own (the Rego of ``spec.opa.configMapRef``).
    """

    def __init__(
        self,
        path: Path,
        apply: Callable[[Controls], Awaitable[None]],
        *,
        interval: float = 1.0,
        on_result: Callable[[bool], None] | None = None,
        on_tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.path = path
        self._on_tick = on_tick
        self.interval = interval
        self.status = PolicyStatus(path=str(path))
        self._apply = apply
        self._on_result = on_result
        self._key = _stat_key(path)
        self._task: asyncio.Task[None] | None = None

    def initial(self) -> Controls:
        """Load the policy at start-up: an invalid file is fatal here (nothing to keep)."""
        self._key = _stat_key(self.path)
        controls, doc = load_controls(self.path)
        self._loaded(controls, doc)
        return controls

    def _loaded(self, controls: Controls, doc: GovernancePolicy) -> None:
        s = self.status
        s.digest, s.name = controls.digest, doc.metadata.name
        s.generation = doc.metadata.generation
        s.loaded_at = time.time()
        s.last_error, s.last_error_at = [], None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="policy-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # the watcher must survive anything a file can do to it
                log.exception("policy reload check failed")
            if self._on_tick is not None:
                try:
                    await self._on_tick()
                except Exception:
                    log.exception("policy source refresh failed")

    async def check(self) -> bool:
        """Reload if the file changed; returns whether a new policy was applied."""
        key = _stat_key(self.path)
        if key == self._key:
            return False
        self._key = key
        try:
            # Validation and compiling (the guardrails model loads here the first time a
            # policy turns it on: seconds) run off the event loop: calls keep flowing.
            controls, doc = await asyncio.get_running_loop().run_in_executor(
                None, load_controls, self.path
            )
        except PolicyFileError as e:
            errors = [str(i) for i in e.issues if not i.warning]
            self.status.last_error = errors
            self.status.last_error_at = time.time()
            log.error(
                "policy %s is invalid, keeping the previous one: %s", self.path, "; ".join(errors)
            )
            if self._on_result:
                self._on_result(False)
            return False
        if controls.digest == self.status.digest:
            self.status.last_error, self.status.last_error_at = [], None
            return False
        try:
            await self._apply(controls)
        except Exception as e:
            self.status.last_error = [f"spec: cannot apply: {e}"]
            self.status.last_error_at = time.time()
            log.error("policy %s could not be applied, keeping the previous one: %s", self.path, e)
            if self._on_result:
                self._on_result(False)
            return False
        self._loaded(controls, doc)
        self.status.reloads += 1
        log.info("policy reloaded from %s (sha256 %s)", self.path, controls.digest[:12])
        if self._on_result:
            self._on_result(True)
        return True


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
