"""``haltgate policy``: work with GovernancePolicy and BudgetPool documents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
import orjson

from haltgate.governance import rego
from haltgate.governance.opa_decision import CODE_OPA_ERROR, OPADecision, parse_decision
from haltgate.governance.opa_input import build_input
from haltgate.governance.policy_base import RequestKind
from haltgate.governance.request import AgentIdentity, CallView, ToolCall
from haltgate.governance.tools import ToolAuthorizer
from haltgate.governance.validation import (
    PolicyFileError,
    load_documents,
    load_policy_file,
    validate_document,
)


@click.group()
def policy() -> None:
    """Validate and test GovernancePolicy / BudgetPool documents."""


@policy.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
def validate(files: tuple[str, ...], quiet: bool) -> None:
    """Check FILES (YAML, as for kubectl apply) against the schema and semantic rules.

    Prints every problem with its field path. Exits 1 if any document is invalid.
    """
    failed = False
    checks = rego.default_checks()  # Rego compile check when an opa binary is available
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                docs = load_documents(f.read(), path)
        except OSError as e:
            click.echo(f"{path}: cannot read: {e.strerror}", err=True)
            failed = True
            continue
        except PolicyFileError as e:
            for issue in e.issues:
                click.echo(f"{path}: {issue}", err=True)
            failed = True
            continue
        if not docs:
            click.echo(f"{path}: no documents", err=True)
            failed = True
        for index, doc in enumerate(docs):
            result = validate_document(doc, extra_checks=checks)
            name = doc.get("metadata", {}).get("name", "?") if isinstance(doc, dict) else "?"
            kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
            where = f"{path}[{index}] {kind}/{name}" if len(docs) > 1 else f"{path} {kind}/{name}"
            for issue in result.issues:
                label = "warning" if issue.warning else "error"
                click.echo(f"{where}: {label}: {issue}", err=True)
            if result.ok:
                if not quiet:
                    click.echo(f"{where}: valid")
            else:
                failed = True
    raise SystemExit(1 if failed else 0)


# --------------------------------------------------------------------------- policy test


def _call_from_input(doc: Mapping[str, Any]) -> CallView:
    """The CallView described by an OPA-style input document (see docs/policies.md)."""
    req = doc.get("request") or {}
    agent = doc.get("agent") or {}
    if not isinstance(req, Mapping) or not isinstance(agent, Mapping):
        raise click.UsageError("input: 'request' and 'agent' must be objects")
    kind = req.get("kind")
    try:
        kind_value = RequestKind(kind) if kind is not None else None
    except ValueError as e:
        raise click.UsageError(f"input: request.kind must be llm, mcp, http or null: {e}") from e
    tools = doc.get("tools") or []
    if not isinstance(tools, list) or not all(
        isinstance(t, Mapping) and isinstance(t.get("name"), str) for t in tools
    ):
        raise click.UsageError("input: 'tools' must be a list of objects with a 'name'")
    host = str(req.get("host", ""))
    scheme = str(req.get("scheme", "https"))
    query = req.get("query") or {}
    if not isinstance(query, Mapping) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in query.values()
    ):
        raise click.UsageError(
            "input: request.query must be an object of lists of strings ({name: [values]})"
        )
    return CallView(
        kind=kind_value,
        method=str(req.get("method", "POST")),
        scheme=scheme,
        host=host,
        port=int(req.get("port") or (443 if scheme == "https" else 80)),
        path=str(req.get("path", "/")),
        upstream=req.get("upstream"),
        model=req.get("model"),
        tool_calls=tuple(
            ToolCall(str(t["name"]), t.get("arguments"), t.get("server")) for t in tools
        ),
        mcp_method=req.get("mcp_method") or ("tools/call" if tools else None),
        max_output_tokens=req.get("max_output_tokens"),
        stream=bool(req.get("stream", False)),
        agent=AgentIdentity(
            **{k: str(agent.get(k, "")) for k in ("namespace", "workload", "pod", "run_id")}
        ),
        query=tuple((str(name), value) for name, values in query.items() for value in values),
    )


def _verdict(allowed: bool) -> str:
    return "ALLOW" if allowed else "DENY"


@policy.command("test")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--input",
    "-i",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="JSON request: an OPA input document (agent, request, tools, budget, "
    "usage, findings), see docs/policies.md.",
)
@click.option(
    "--rego",
    "rego_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Rego file to use when the policy takes its module from a ConfigMap "
    "(or to try another module).",
)
@click.option(
    "--opa", "opa_path", help="opa binary (default: PATH, then ~/.cache/haltgate/bin/opa)."
)
@click.option(
    "--expect",
    type=click.Choice(["allow", "deny"]),
    help="Exit 1 unless the final decision is this (for CI).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def test(
    file: str,
    input_path: str,
    rego_path: str | None,
    opa_path: str | None,
    expect: str | None,
    as_json: bool,
) -> None:
    """Evaluate the policy in FILE for one request: tool rules, then OPA (with `opa eval`).

    Prints each stage's decision and why (the deciding rule, OPA's reason and code) and the
    final decision, the one the sidecar would take. Budgets and guardrails are not
    evaluated here: give their state in the input's `budget`, `usage` and `findings`.
    Exit codes: 0 evaluated (and matched --expect), 1 --expect not met or invalid policy,
    2 usage error or no opa binary for a policy with `spec.opa`.
    """
    try:
        document = load_policy_file(file)
    except PolicyFileError as e:
        for issue in e.issues:
            click.echo(f"{file}: {'warning' if issue.warning else 'error'}: {issue}", err=True)
        raise SystemExit(1) from e
    try:
        with open(input_path, "rb") as f:
            request = orjson.loads(f.read())
    except (OSError, orjson.JSONDecodeError) as e:
        raise click.UsageError(f"{input_path}: not a JSON document: {e}") from e
    if not isinstance(request, Mapping):
        raise click.UsageError(f"{input_path}: must hold a JSON object")
    spec = document.spec
    call = _call_from_input(request)
    authz = ToolAuthorizer(spec.tools).authorize(call)
    report: dict[str, Any] = {
        "tools": {
            "allowed": authz.allowed,
            "rule": authz.rule,
            "risk": authz.risk,
            "code": authz.code,
            "message": authz.message,
        },
        "opa": None,
    }
    allowed, code = authz.allowed, authz.code
    if spec.opa is not None:
        binary = opa_path or rego.find_opa_binary()
        if binary is None:
            click.echo(
                "no opa binary: put `opa` on PATH, pass --opa, or run `make binaries`", err=True
            )
            raise SystemExit(2)
        if rego_path is not None:
            with open(rego_path, encoding="utf-8") as f:
                module = f.read()
        elif spec.opa.rego is not None:
            module = spec.opa.rego
        else:
            raise click.UsageError("the policy takes its Rego from a ConfigMap: pass --rego")
        opa_input = build_input(
            call,
            authz=authz,
            budget=request.get("budget"),
            usage=request.get("usage"),
            findings=request.get("findings") or (),
        )
        try:
            body = rego.eval_rego(module, spec.opa.decision_path, opa_input, opa=binary)
        except rego.RegoToolError as e:
            click.echo(f"opa: {e}", err=True)
            raise SystemExit(2) from e
        if "errors" in body:
            errs = "; ".join(
                str(x.get("message", x)) for x in body["errors"] if isinstance(x, Mapping)
            )
            decision = OPADecision(False, f"OPA error: {errs}", code=CODE_OPA_ERROR)
        else:
            decision = parse_decision(body)
        report["opa"] = {
            "allow": decision.allow,
            "code": decision.code,
            "reason": decision.reason,
            "failure_type": decision.failure_type.value if decision.failure_type else None,
            "risk": decision.risk,
            "headers": dict(decision.headers),
            "decision_path": spec.opa.decision_path,
            "value": body.get("result"),
        }
        if allowed and not decision.allow:
            allowed, code = False, decision.code
    report["decision"] = {"allowed": allowed, "code": code}

    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        t = report["tools"]
        why = f"rule {t['rule']!r}" if t["rule"] else "default"
        click.echo(
            f"tool rules: {_verdict(t['allowed'])} by {why}"
            + (f" [{t['code']}]" if t["code"] else "")
            + f" risk={t['risk']:g}: {t['message']}"
        )
        if (o := report["opa"]) is not None:
            line = f"opa:        {_verdict(o['allow'])} data.{o['decision_path'].replace('/', '.')}"
            if o["code"]:
                line += f" [{o['code']}]"
            if o["failure_type"]:
                line += f" {o['failure_type']}"
            line += f" risk={o['risk']:g}"
            if o["headers"]:
                line += f" headers={o['headers']}"
            click.echo(line + (f": {o['reason']}" if o["reason"] else ""))
        else:
            click.echo("opa:        (no spec.opa)")
        click.echo(f"decision:   {_verdict(allowed)}" + (f" [{code}]" if code else ""))
    if expect is not None and (expect == "allow") != allowed:
        raise SystemExit(1)


def _add_simulate() -> None:
    from haltgate.cli.simulate import simulate

    policy.add_command(simulate)


_add_simulate()
