"""Rego checks and local evaluation with the ``opa`` binary (policy authoring and admission).

Not on the request path: the sidecar talks to an OPA *server* (:mod:`haltgate.governance.opa`).
This module runs ``opa check`` to reject Rego that does not compile (with line and column)
and ``opa eval`` for ``haltgate policy test``. The binary is found on ``PATH`` or in the
binary cache (``~/.cache/haltgate/bin/opa``, where ``make binaries`` puts it); without one,
Rego compile checks are skipped (the OPA server still rejects the module at load time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.validation import Issue

__all__ = [
    "RegoCompileCheck",
    "RegoError",
    "RegoToolError",
    "check_rego",
    "default_checks",
    "eval_rego",
    "find_opa_binary",
    "missing_decision",
    "rule_refs",
]

OPA_TIMEOUT_SECONDS: Final = 20.0
"""Upper bound for one ``opa check``/``opa eval`` run (they take milliseconds)."""

MAX_REGO_BYTES: Final = 1024 * 1024
"""Largest Rego module checked; larger ones are an error (a CR cannot hold more anyway)."""


class RegoToolError(Exception):
    """The ``opa`` binary is missing, failed to run, or printed something unreadable."""


@dataclass(frozen=True, slots=True)
class RegoError:
    """One compile error of a Rego module."""

    row: int | None
    col: int | None
    message: str
    code: str

    def __str__(self) -> str:
        where = f"line {self.row}, column {self.col}: " if self.row is not None else ""
        return f"{where}{self.message} ({self.code})"


def _cache_dir() -> Path:
    if override := os.environ.get("HALTGATE_BIN_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "haltgate" / "bin"


def find_opa_binary() -> str | None:
    """``$HALTGATE_OPA``, else ``opa`` on ``PATH``, else the binary cache; ``None`` if none."""
    candidates = [os.environ.get("HALTGATE_OPA"), shutil.which("opa"), str(_cache_dir() / "opa")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            timeout=OPA_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RegoToolError(f"cannot run {argv[0]}: {e}") from e


def _json_of(proc: subprocess.CompletedProcess[bytes]) -> Any:
    # `opa check --format json` prints errors on stderr, `opa eval` results on stdout.
    for stream in (proc.stdout, proc.stderr):
        text = stream.strip()
        if text.startswith(b"{"):
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
    tail = (proc.stderr or proc.stdout)[-500:].decode(errors="replace")
    raise RegoToolError(f"opa exited {proc.returncode} without a JSON answer: {tail}")


def _errors_of(doc: Mapping[str, Any]) -> list[RegoError]:
    out = []
    for err in doc.get("errors") or []:
        if not isinstance(err, Mapping):
            continue
        loc = err.get("location")
        if not isinstance(loc, Mapping):
            loc = {}
        out.append(
            RegoError(
                loc.get("row"),
                loc.get("col"),
                str(err.get("message", "")),
                str(err.get("code", "")),
            )
        )
    return out


def check_rego(rego: str, *, opa: str, strict: bool = False) -> list[RegoError]:
    """Compile ``rego`` with ``opa check``; returns its errors (empty when it compiles)."""
    if len(rego.encode()) > MAX_REGO_BYTES:
        return [RegoError(None, None, f"module larger than {MAX_REGO_BYTES} bytes", "too_large")]
    with tempfile.TemporaryDirectory(prefix="haltgate-rego-") as tmp:
        path = Path(tmp) / "policy.rego"
        path.write_text(rego, encoding="utf-8")
        argv = [opa, "check", "--format", "json", *(["--strict"] if strict else []), str(path)]
        proc = _run(argv)
        if proc.returncode == 0:
            return []
        errors = _errors_of(_json_of(proc))
        if not errors:
            raise RegoToolError(f"opa check failed (exit {proc.returncode}) without errors")
        return errors


def rule_refs(rego: str, *, opa: str) -> list[tuple[str, ...]]:
    """The full path (``data`` left out) of every rule of a module that compiles, e.g.
    ``("haltgate", "decision")``, from ``opa parse``."""
    with tempfile.TemporaryDirectory(prefix="haltgate-parse-") as tmp:
        path = Path(tmp) / "policy.rego"
        path.write_text(rego, encoding="utf-8")
        proc = _run([opa, "parse", "--format", "json", str(path)])
    if proc.returncode != 0:
        raise RegoToolError(
            f"opa parse exited {proc.returncode}: {proc.stderr[-300:].decode(errors='replace')}"
        )
    try:
        doc = orjson.loads(proc.stdout)
    except orjson.JSONDecodeError as e:
        raise RegoToolError(f"opa parse printed no JSON: {e}") from e

    def names(terms: Any) -> tuple[str, ...]:
        out = []
        for t in terms or []:
            if not isinstance(t, Mapping) or t.get("type") not in ("var", "string"):
                break  # a variable key (partial set/object): the path ends here
            out.append(str(t.get("value")))
        return tuple(out)

    package = names((doc.get("package") or {}).get("path"))[1:]  # without "data"
    refs = []
    for rule in doc.get("rules") or []:
        head = rule.get("head") or {}
        ref = names(head.get("ref")) or ((str(head["name"]),) if head.get("name") else ())
        refs.append(package + ref)
    return refs


def missing_decision(rego: str, decision_path: str, *, opa: str) -> str | None:
    """Why ``data.<decision_path>`` can never be defined by this module, or None.

    The path is covered when a rule's path and it are prefixes of one another (a rule
    ``decision`` for ``haltgate/decision``, or a rule ``decision.allow``)."""
    want = tuple(decision_path.split("/"))
    refs = rule_refs(rego, opa=opa)
    for ref in refs:
        n = min(len(ref), len(want))
        if ref[:n] == want[:n]:
            return None
    shown = ", ".join(sorted({"data." + ".".join(r) for r in refs})[:8]) or "none"
    return (
        f"no rule at data.{'.'.join(want)} (decisionPath {decision_path}); every "
        f"decision would be undefined and refused (opa_undefined). Rules: {shown}"
    )


def eval_rego(rego: str, query_path: str, input_doc: Any, *, opa: str) -> dict[str, Any]:
    """Evaluate ``data.<query_path>`` (slashes or dots) with ``opa eval``.

    Returns the body the OPA server's data API would return: ``{"result": value}``, or
    ``{}`` when undefined, or ``{"errors": [...]}`` when evaluation fails, so the same
    :func:`haltgate.governance.opa_decision.parse_decision` reads both.
    """
    query = "data." + query_path.replace("/", ".")
    with tempfile.TemporaryDirectory(prefix="haltgate-eval-") as tmp:
        module, inp = Path(tmp) / "policy.rego", Path(tmp) / "input.json"
        module.write_text(rego, encoding="utf-8")
        inp.write_bytes(orjson.dumps(input_doc))
        proc = _run(
            [opa, "eval", "--format", "json", "--data", str(module), "--input", str(inp), query]
        )
    doc = _json_of(proc)
    if not isinstance(doc, Mapping):
        raise RegoToolError("opa eval printed JSON that is not an object")
    if doc.get("errors"):
        return {"errors": list(doc["errors"])}
    rows = doc.get("result") or []
    if not rows:
        return {}
    expressions = rows[0].get("expressions") or []
    if not expressions:
        return {}
    return {"result": expressions[0].get("value")}


class RegoCompileCheck:
    """A validation check (for ``validate_document(extra_checks=...)``): inline Rego of
    ``spec.opa.rego`` must compile (errors carry line and column) and have a rule at
    ``spec.opa.decisionPath``."""

    def __init__(self, opa: str, *, strict: bool = False) -> None:
        self.opa = opa
        self.strict = strict

    def __call__(self, spec: GovernancePolicySpec) -> list[Issue]:
        if spec.opa is None or spec.opa.rego is None:
            return []
        try:
            errors = check_rego(spec.opa.rego, opa=self.opa, strict=self.strict)
            if errors:
                return [Issue("spec.opa.rego", str(err)) for err in errors]
            why = missing_decision(spec.opa.rego, spec.opa.decision_path, opa=self.opa)
        except RegoToolError as e:
            return [Issue("spec.opa.rego", f"could not be compiled: {e}")]
        return [Issue("spec.opa.decisionPath", why)] if why else []


def _rego_not_checked(spec: GovernancePolicySpec) -> list[Issue]:
    if spec.opa is None or spec.opa.rego is None:
        return []
    return [
        Issue(
            "spec.opa.rego",
            "not compiled: no opa binary found (PATH, $HALTGATE_OPA or ~/.cache/haltgate/bin/opa)",
            warning=True,
        )
    ]


def default_checks(opa: str | None = None) -> list[Callable[[GovernancePolicySpec], list[Issue]]]:
    """The extra validation checks available here: the Rego compile check when an ``opa``
    binary is found (``opa`` argument, else :func:`find_opa_binary`), else a check that
    only warns that inline Rego was not compiled."""
    binary = opa or find_opa_binary()
    return [RegoCompileCheck(binary)] if binary else [_rego_not_checked]
