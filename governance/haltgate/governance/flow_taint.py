"""The flow state of the current run (``spec.flows``): which rules it is tainted for and
by what source, approvals waiting and granted, and the values its untrusted content
carried (``action: deny-untrusted-values``, kept as a :class:`ValueFilter`).

Bound to a run id: asked about another run (after an operator reset), it starts empty.
With a ``path`` it is kept in one JSON file, written atomically (temporary file, fsync,
rename) whenever it changes, and read back at start, so a sidecar restart, even a
``kill -9``, resumes it. A file that cannot be read fails closed: the run counts as
tainted for every rule, with unknown values, until an operator reset.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from haltgate.governance.flow_values import ValueFilter

__all__ = ["UNREADABLE_SOURCE", "FlowTaint"]

log = logging.getLogger(__name__)

_TAINT_VERSION: Final = 2
"""Version 2 adds ``values`` and ``unread``; version 1 files (no values) still load."""
_MAX_PENDING: Final = 256
"""Approval ids kept waiting per run (a bound on the state file; past it, refusals still
name their id but it cannot be approved until a reset)."""
UNREADABLE_SOURCE: Final = "an unknown source (the saved flow taint could not be read)"


class FlowTaint:
    """Which flow rules the current run is tainted for, by what source, and the values
    its untrusted content carried (see the module docstring)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._write_lock = threading.Lock()
        self.run_id: str | None = None
        self.sources: dict[str, str] = {}
        self.calls = 0
        """Governed calls of this run seen by :meth:`tick` (windows count them)."""
        self.tainted_at: dict[str, int] = {}
        """Per rule, ``calls`` when its source last answered (``scope: calls``)."""
        self.pending: set[str] = set()
        """Approval ids refused and waiting for an operator (this run)."""
        self.approved: dict[str, str] = {}
        """Approval ids an operator approved and the agent has not used yet, with the
        operator's name (``actor``; recorded in the audit of the call it lets through)."""
        self.values: ValueFilter | None = None
        """Keyed hashes of the values untrusted answers carried, per rule (created with
        the first one; its key is the run's)."""
        self.unread: dict[str, str] = {}
        """Per rule, the source of an untrusted answer whose values could not be read:
        every sink call of the rule is refused for the rest of the run."""
        self.unreadable = False
        """The state file could not be read: the run counts as tainted for every rule,
        with unknown values, until an operator reset starts a new run."""
        if path is not None:
            self._load(path)

    def bind(self, run_id: str) -> None:
        """Follow the current run: a new run id clears the taint (scope: run)."""
        if run_id == self.run_id:
            return
        if self.run_id is None and self.unreadable:
            self.run_id = run_id  # the run the unreadable file belonged to: still tainted
            return
        had = bool(self.sources or self.pending or self.approved) or self.unreadable
        self.run_id = run_id
        self.sources, self.tainted_at, self.calls = {}, {}, 0
        self.pending, self.approved = set(), {}
        self.values, self.unread = None, {}
        self.unreadable = False
        if had:
            log.info("flow taint cleared: new run %s", run_id)
            self._save()

    def tick(self) -> None:
        """One more governed call in this run (in memory: a restart resumes from the last
        taint, so windows only get longer)."""
        self.calls += 1

    def source_of(self, rule: str, window: int | None = None) -> str | None:
        """The source that tainted the run for ``rule`` (``None``: not tainted, or its
        window of ``window`` calls after the last untrusted answer has passed)."""
        if self.unreadable:  # fail closed: every rule counts as tainted
            return self.sources.get(rule, UNREADABLE_SOURCE)
        source = self.sources.get(rule)
        if (
            source is not None
            and window is not None
            and self.calls - self.tainted_at.get(rule, self.calls) > window
        ):
            return None
        return source

    def taint(self, rules: Iterable[str], source: str) -> bool:
        """Record that the run took in content from ``source`` (the first source per rule
        is named; a window restarts). True when something changed."""
        changed = False
        for rule in rules:
            if rule not in self.sources:
                self.sources[rule] = source
                changed = True
            if self.tainted_at.get(rule) != self.calls:
                self.tainted_at[rule] = self.calls
                changed = True
        if changed:
            self._save()
        return changed

    def record_values(
        self, rules: Iterable[str], values: Iterable[str], *, save: bool = True
    ) -> int:
        """Keep the values an untrusted answer carried for ``rules`` (hashed); returns how
        many set a new bit. Saved at once, or (``save=False``) by the caller's own
        :meth:`save` (off the event loop), which must end before the answer reaches the
        agent."""
        rules = list(rules)
        if not rules:
            return 0
        if self.values is None:
            self.values = ValueFilter()
        new = 0
        for value in values:
            for rule in rules:
                new += self.values.add(rule, value)
        if new and save:
            self._save()
        return new

    def values_unread(self, rules: Iterable[str], source: str) -> None:
        """An answer from ``source`` could not be read for values: ``rules`` refuse every
        sink call for the rest of the run (fail closed)."""
        changed = False
        for rule in rules:
            if rule not in self.unread:
                self.unread[rule] = source
                changed = True
        if changed:
            self._save()

    def values_unknown(self, rule: str) -> str | None:
        """Why ``rule`` cannot tell which values the run took in (``None``: it can)."""
        if self.unreadable:
            return "the saved flow state could not be read"
        source = self.unread.get(rule)
        return None if source is None else f"an answer from {source} could not be read"

    def carried(self, rule: str, candidates: Iterable[tuple[str, str]]) -> str | None:
        """The first argument path whose value an untrusted answer of ``rule`` carried."""
        if self.values is None:
            return None
        contains = self.values.contains
        for path, value in candidates:
            if contains(rule, value):
                return path
        return None

    def ask_approval(self, approval: str) -> None:
        """Remember a refused call's approval id (only those can be approved)."""
        if approval not in self.pending and len(self.pending) < _MAX_PENDING:
            self.pending.add(approval)
            self._save()

    def approve(self, approval: str, actor: str = "") -> bool:
        """An operator approves one refused call; False: no such pending approval."""
        if approval not in self.pending:
            return False
        self.pending.discard(approval)
        self.approved[approval] = actor
        self._save()
        return True

    def use_approval(self, approval: str) -> str | None:
        """Let an approved call pass, once: the approving operator (``None``: the call
        is not approved)."""
        actor = self.approved.pop(approval, None)
        if actor is not None:
            self._save()
        return actor

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": _TAINT_VERSION,
            "run_id": self.run_id,
            "sources": dict(self.sources),
            "tainted_at": dict(self.tainted_at),
            "pending": sorted(self.pending),
            "approved": dict(sorted(self.approved.items())),
            "values": self.values.to_doc() if self.values is not None else None,
            "unread": dict(self.unread),
        }

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            doc = None
            log.error(
                "flow taint file %s unreadable (%s): the run counts as tainted for "
                "every flow rule until an operator reset",
                path,
                e,
            )
        if (
            isinstance(doc, dict)
            and doc.get("version") in (1, _TAINT_VERSION)
            and isinstance(doc.get("sources"), dict)
            and isinstance(doc.get("run_id"), str)
        ):
            self.run_id = doc["run_id"]
            self.sources = {str(k): str(v) for k, v in doc["sources"].items()}
            at = doc.get("tainted_at")
            self.tainted_at = (
                {str(k): int(v) for k, v in at.items() if isinstance(v, int)}
                if isinstance(at, dict)
                else {}
            )
            self.calls = max(self.tainted_at.values(), default=0)
            self.pending = {str(a) for a in doc.get("pending") or ()}
            approved = doc.get("approved") or ()
            self.approved = (
                {str(a): str(actor) for a, actor in approved.items()}
                if isinstance(approved, dict)
                else dict.fromkeys(map(str, approved), "")
            )
            unread = doc.get("unread")
            self.unread = (
                {str(k): str(v) for k, v in unread.items()} if isinstance(unread, dict) else {}
            )
            values = doc.get("values")
            if values is not None:
                try:
                    self.values = ValueFilter.from_doc(values)
                except ValueError as e:
                    log.error(
                        "flow taint file %s: %s: the run counts as tainted for every flow "
                        "rule until an operator reset",
                        path,
                        e,
                    )
                    self.unreadable = True
        else:
            if doc is not None:
                log.error(
                    "flow taint file %s malformed: the run counts as tainted for "
                    "every flow rule until an operator reset",
                    path,
                )
            self.unreadable = True

    def save(self) -> None:
        """Write the state now (safe from a worker thread: writes are serialised, and
        each writes the state as it is when its turn comes)."""
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        with self._write_lock:
            self._write(self.path)

    def _write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            data = json.dumps(self.snapshot(), sort_keys=True).encode()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:  # the taint still holds in memory for this process
            log.error("cannot save the flow taint to %s: %s", path, e)
