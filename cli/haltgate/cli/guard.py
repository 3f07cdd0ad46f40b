"""``haltgate guard``: run the guardrail detectors on text, offline.

``haltgate guard scan`` reads JSON lines ``{"text": "..."}`` (from FILE or standard input) and
writes one JSON line per input line, in order::

    {"verdict": "block"|"allow", "findings": [{"detector", "type", "score", "start", "end",
     "action", ...}], "risk": 1.0, "redacted_text": "..."}

``redacted_text`` appears only when a redact action changed the text. A line may say where
its text comes from, ``"channel": "request"|"document"`` (request text, or a tool result /
document; default: ``--channel``, else by direction). A line that is not a JSON object with
a string ``text`` (and a valid ``channel`` if any) gives ``{"error": "..."}`` and the command
exits 1 after the last line. Without ``--policy`` every detector runs in both directions with action
``block`` (PII: ``redact``) at threshold 0.5.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import click
import orjson

from haltgate.governance import policy_checks
from haltgate.governance.guardrails import Guardrails
from haltgate.governance.guardrails.base import CHANNELS
from haltgate.governance.validation import PolicyFileError, load_policy_file

_DETECTOR_FIELDS = {"prompt_injection": "prompt_injection", "pii": "pii", "secrets": "secrets"}


def default_spec() -> policy_checks.Guardrails:
    """All detectors on, both directions: injection and secrets block, PII redacts."""
    return policy_checks.Guardrails.model_validate(
        {"promptInjection": {}, "pii": {"action": "redact"}, "secrets": {}}
    )


def _restrict(spec: policy_checks.Guardrails, names: list[str]) -> policy_checks.Guardrails:
    update: dict[str, Any] = {f: None for f in _DETECTOR_FIELDS.values() if f not in names}
    return spec.model_copy(update=update)


@click.group()
def guard() -> None:
    """Run the guardrail detectors (prompt injection, PII, secrets) on text."""


@guard.command()
@click.argument("source", default="-", type=click.File("r", encoding="utf-8"))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="GovernancePolicy file whose spec.guardrails is applied.",
)
@click.option(
    "--direction",
    type=click.Choice(["request", "response"]),
    default="request",
    show_default=True,
    help="Direction the texts travel in.",
)
@click.option(
    "--channel",
    type=click.Choice(["request", "document"]),
    default=None,
    help="Where the texts come from: request text, or a tool result / document "
    "(default: request for --direction request, document for response).",
)
@click.option(
    "--detectors",
    default=None,
    metavar="LIST",
    help="Comma-separated subset: prompt_injection,pii,secrets.",
)
def scan(
    source: IO[str],
    policy_file: str | None,
    direction: str,
    channel: str | None,
    detectors: str | None,
) -> None:
    """Scan JSON lines {"text": ...} from SOURCE (default: standard input)."""
    if policy_file is not None:
        try:
            spec = load_policy_file(policy_file).spec.guardrails
        except PolicyFileError as e:
            for issue in e.issues:
                click.echo(f"{policy_file}: {issue}", err=True)
            raise SystemExit(2) from e
    else:
        spec = default_spec()
    if detectors:
        names = [n.strip() for n in detectors.split(",") if n.strip()]
        unknown = sorted(set(names) - set(_DETECTOR_FIELDS))
        if unknown:
            raise click.BadParameter(
                f"unknown detector(s): {', '.join(unknown)}", param_hint="--detectors"
            )
        spec = _restrict(spec, names)
    guardrails = Guardrails.from_spec(spec)
    failed = False
    out = sys.stdout.buffer
    for lineno, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            out.write(orjson.dumps({"error": f'line {lineno}: expected {{"text": string}}'}))
            out.write(b"\n")
            failed = True
            continue
        line_channel = doc.get("channel", channel)
        if line_channel not in (None, *CHANNELS):
            message = f'line {lineno}: channel: expected "request" or "document"'
            out.write(orjson.dumps({"error": message}))
            out.write(b"\n")
            failed = True
            continue
        result = guardrails.scan(
            doc["text"],
            direction,  # type: ignore[arg-type]
            channel=line_channel,
        )
        record = result.to_dict()
        if result.redacted_text is not None:
            record["redacted_text"] = result.redacted_text
        out.write(orjson.dumps(record))
        out.write(b"\n")
        out.flush()
    if failed:
        raise SystemExit(1)
