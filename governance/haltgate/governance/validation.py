"""Validation of GovernancePolicy and BudgetPool documents, with field paths.

One function, :func:`validate_document`, used by ``haltgate policy validate``, by the
admission webhook and by the sidecar when it loads a policy file. It checks the schema
(the pydantic models of :mod:`haltgate.governance.policy`) and the semantic rules that a
schema cannot express, and returns *every* problem, each with its field path, e.g.
``spec.budgets.tokens.limit: must be >= 0``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from haltgate.governance import apitypes
from haltgate.governance.drift_policy import drift_problems
from haltgate.governance.flows import flow_problems, flow_warnings
from haltgate.governance.mcp import uri_glob_problem
from haltgate.governance.policy import BudgetPool, GovernancePolicy, GovernancePolicySpec
from haltgate.governance.policy_base import GuardAction, RequestKind
from haltgate.governance.tools import find_conflicts

_QUERY_ARGUMENT = re.compile(r"^\$\.query\.[A-Za-z0-9_-]+$")
"""The one argument path of an HTTP rule: a query parameter (see canonical_query)."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation problem. ``warning`` issues do not make a document invalid."""

    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Result:
    document: GovernancePolicy | BudgetPool | None
    issues: tuple[Issue, ...]

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if not i.warning)

    @property
    def ok(self) -> bool:
        return self.document is not None and not self.errors


class PolicyFileError(Exception):
    """A policy file could not be read or is invalid; ``issues`` says why."""

    code = "invalid_policy"

    def __init__(self, source: str, issues: Iterable[Issue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        super().__init__(f"{source}: " + "; ".join(str(i) for i in self.issues if not i.warning))


_KINDS: dict[str, type[GovernancePolicy] | type[BudgetPool]] = {
    "GovernancePolicy": GovernancePolicy,
    "BudgetPool": BudgetPool,
}


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<document>"


def _num(value: Any) -> str:
    """0.0 -> 0, 0.5 -> 0.5: bounds read as people write them."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    match kind:
        case "greater_than_equal":
            return f"must be >= {_num(ctx['ge'])}"
        case "greater_than":
            return f"must be > {_num(ctx['gt'])}"
        case "less_than_equal":
            return f"must be <= {_num(ctx['le'])}"
        case "less_than":
            return f"must be < {_num(ctx['lt'])}"
        case "missing":
            return "required field is missing"
        case "extra_forbidden":
            return "unknown field"
        case "enum" | "literal_error":
            return f"must be one of {ctx.get('expected', '')}".rstrip()
        case "string_pattern_mismatch":
            return f"must match {ctx['pattern']}"
        case "string_too_short":
            return f"must be at least {ctx['min_length']} characters"
        case "string_too_long":
            return f"must be at most {ctx['max_length']} characters"
        case _:
            return str(err["msg"]).removeprefix("Value error, ")


def _loc_without_union_tags(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds the type tried to the location for unions (e.g. "int", "float").
    return tuple(p for p in loc if p not in {"int", "float", "str", "bool", "none"})


def _compiles(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as e:
        return f"invalid regular expression: {e}"
    return None


def _semantic_policy(spec: GovernancePolicySpec) -> list[Issue]:
    """Rules that the schema cannot express. Paths use the wire (camelCase) names."""
    issues: list[Issue] = []
    add = issues.append

    tokens = spec.budgets.tokens
    if tokens is not None and (tokens.limit, tokens.input, tokens.output) == (None, None, None):
        add(Issue("spec.budgets.tokens", "set at least one of limit, input, output"))

    seen: set[str] = set()
    for i, up in enumerate(spec.upstreams):
        p = f"spec.upstreams[{i}]"
        if up.name in seen:
            add(Issue(f"{p}.name", f"duplicate upstream name {up.name!r}"))
        seen.add(up.name)
        if up.provider is not None and up.kind is not RequestKind.LLM:
            add(Issue(f"{p}.provider", "only valid for upstreams of kind llm"))

    seen = set()
    for i, rule in enumerate(spec.tools.rules):
        p = f"spec.tools.rules[{i}]"
        if rule.name in seen:
            add(Issue(f"{p}.name", f"duplicate rule name {rule.name!r}"))
        seen.add(rule.name)
        if (rule.mcp_tools or rule.mcp_servers) and rule.kind not in (None, RequestKind.MCP):
            add(Issue(f"{p}.mcpTools", "only valid for rules of kind mcp"))
        if rule.models and rule.kind not in (None, RequestKind.LLM):
            add(Issue(f"{p}.models", "only valid for rules of kind llm"))
        if rule.arguments and rule.kind is RequestKind.LLM:
            add(Issue(f"{p}.arguments", "only valid for rules of kind mcp or http"))
        for j, c in enumerate(rule.arguments):
            q = f"{p}.arguments[{j}]"
            if rule.kind is RequestKind.HTTP and not _QUERY_ARGUMENT.match(c.path):
                add(
                    Issue(
                        f"{q}.path",
                        "the arguments of an HTTP call are its query parameters: "
                        "use $.query.<name>",
                    )
                )
            set_ = [
                n
                for n, v in (
                    ("equals", c.equals),
                    ("in", c.in_),
                    ("regex", c.regex),
                    ("maxLength", c.max_length),
                )
                if v is not None
            ]
            if len(set_) != 1:
                add(
                    Issue(
                        q,
                        "set exactly one of equals, in, regex, maxLength"
                        + (f" (found {', '.join(set_)})" if set_ else ""),
                    )
                )
            if c.regex is not None and (err := _compiles(c.regex)):
                add(Issue(f"{q}.regex", err))
    for allow_index, _, message in find_conflicts(spec.tools):
        add(Issue(f"spec.tools.rules[{allow_index}]", message))

    for section, names in (
        ("resources", [r.name for r in spec.mcp.resources.rules]),
        ("prompts", [r.name for r in spec.mcp.prompts.rules]),
    ):
        seen = set()
        for i, name in enumerate(names):
            if name in seen:
                add(Issue(f"spec.mcp.{section}.rules[{i}].name", f"duplicate rule name {name!r}"))
            seen.add(name)
    for i, res_rule in enumerate(spec.mcp.resources.rules):
        for j, glob in enumerate(res_rule.uris):
            if (problem := uri_glob_problem(glob)) is not None:
                add(Issue(f"spec.mcp.resources.rules[{i}].uris[{j}]", problem))

    g = spec.guardrails
    for name, det in (
        ("promptInjection", g.prompt_injection),
        ("pii", g.pii),
        ("secrets", g.secrets),
    ):
        if det is None:
            continue
        p = f"spec.guardrails.{name}"
        if det.action is GuardAction.REDACT and name == "promptInjection":
            add(Issue(f"{p}.action", "redact is not available for promptInjection"))
        for j, pat in enumerate(det.allowlist):
            if err := _compiles(pat):
                add(Issue(f"{p}.allowlist[{j}]", err))

    issues.extend(Issue(path, message) for path, message in flow_problems(spec))
    issues.extend(Issue(path, message, warning=True) for path, message in flow_warnings(spec))
    issues.extend(Issue(path, message) for path, message in drift_problems(spec.drift))

    if spec.opa is not None and (spec.opa.rego is None) == (spec.opa.config_map_ref is None):
        add(Issue("spec.opa", "set exactly one of rego, configMapRef"))

    if spec.pricing.unknown_model == "default" and spec.pricing.default is None:
        add(Issue("spec.pricing.default", "required when unknownModel is 'default'"))

    if spec.engine.type == "emocore" and not spec.engine.profile:
        add(Issue("spec.engine.profile", "required when type is 'emocore'"))

    for j, req in enumerate(spec.selector.match_expressions):
        p = f"spec.selector.matchExpressions[{j}].values"
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            add(Issue(p, f"must be empty for operator {req.operator}"))
        if req.operator in ("In", "NotIn") and not req.values:
            add(Issue(p, f"must not be empty for operator {req.operator}"))

    if not spec.selector.match_labels and not spec.selector.match_expressions:
        add(
            Issue(
                "spec.selector",
                "empty selector: the policy governs every injected pod "
                "of the namespace that no other policy's selector names (the namespace's "
                "default)",
                warning=True,
            )
        )
    if spec.enforcement == "monitor":
        add(
            Issue(
                "spec.enforcement",
                "monitor: the controls' refusals are audited and counted "
                "(haltgate_would_refuse_total), nothing is refused (docs/rollout.md)",
                warning=True,
            )
        )
    return issues


PolicyCheck = Callable[[GovernancePolicySpec], list[Issue]]
"""An extra check of a schema-valid GovernancePolicy spec (e.g. Rego compilation with the
``opa`` binary, :func:`haltgate.governance.rego.default_checks`)."""


_MAX_PRUNE_ROUNDS = 8
"""Schema passes over a document with the failing fields taken out, so that the semantic
checks still run and one pass reports every error."""


def _prune(doc: Any, loc: tuple[int | str, ...], missing: bool) -> tuple[int | str, ...] | None:
    """Take the value at ``loc`` out of ``doc`` (in place); for a missing field, the object
    that lacks it. A list item goes with its whole list (indexes must not shift under the
    remaining paths). Returns the location removed, or None when nothing can be."""
    target = loc[:-1] if missing else loc
    while target:
        parent: Any = doc
        for part in target[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                return None
        key = target[-1]
        if isinstance(parent, dict) and key in parent and not isinstance(key, int):
            del parent[key]
            return target
        target = target[:-1]  # a list item: remove the list that holds it
    return None


def _under(path: str, pruned: Sequence[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) for p in pruned)


def _touches(path: str, pruned: Sequence[str]) -> bool:
    """A semantic issue at or around a pruned field: about the field or caused by its
    absence (``tokens`` without ``limit``), so not reported."""
    return _under(path, pruned) or any(p.startswith((path + ".", path + "[")) for p in pruned)


def validate_document(doc: Any, *, extra_checks: Sequence[PolicyCheck] = ()) -> Result:
    """Validate one parsed YAML/JSON document (a GovernancePolicy or a BudgetPool).

    Reports every problem in one pass: JSON types as the apiserver checks them (integers
    fit 64 bits, numbers are finite, no ``"5"`` for a number), then the schema, then the
    semantic rules on what remains once failing fields are taken out.
    ``extra_checks`` run on a GovernancePolicy spec; the admission webhook and ``haltgate
    policy validate`` pass the Rego compile check when they can."""
    if not isinstance(doc, Mapping):
        return Result(None, (Issue("<document>", "must be a mapping (a YAML object)"),))
    kind = doc.get("kind")
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return Result(None, (Issue("kind", f"must be one of {', '.join(_KINDS)}"),))
    work = copy.deepcopy(dict(doc))
    issues: list[Issue] = []
    pruned: list[str] = []
    for loc, message in apitypes.type_issues(model, work):
        issues.append(Issue(_path(loc), message))
        if (gone := _prune(work, loc, missing=False)) is not None:
            pruned.append(_path(gone))
    parsed: GovernancePolicy | BudgetPool | None = None
    for _ in range(_MAX_PRUNE_ROUNDS):
        try:
            parsed = model.model_validate(work)
            break
        except ValidationError as e:
            progress = False
            for err in e.errors():
                loc = _loc_without_union_tags(tuple(err["loc"]))
                path = _path(loc)
                missing = err["type"] == "missing"
                if not (missing and _under(path, pruned)):
                    issues.append(Issue(path, _message(err)))
                if (gone := _prune(work, loc, missing)) is not None:
                    pruned.append(_path(gone))
                    progress = True
            if not progress:
                break
    if parsed is not None:
        more = _semantic_policy(parsed.spec) if isinstance(parsed, GovernancePolicy) else []
        if isinstance(parsed, GovernancePolicy):
            for check in extra_checks:
                more.extend(check(parsed.spec))
        issues += [i for i in more if not _touches(i.path, pruned)]
    # Unique, in the order found: unions can report the same place twice.
    issues = list(dict.fromkeys(issues))
    errors = [i for i in issues if not i.warning]
    return Result(None if errors or parsed is None else parsed, tuple(issues))


def load_documents(text: str, source: str = "<input>") -> list[Any]:
    """Parse a multi-document YAML text. Raises :class:`PolicyFileError` on bad YAML."""
    try:
        # Numbers as kubectl reads them (1e3 is a number, 1e400 a string): same verdict.
        return [d for d in yaml.load_all(text, Loader=apitypes.KubectlLoader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<document>"
        raise PolicyFileError(source, [Issue(where, f"invalid YAML: {e}")]) from e


def policy_from_text(text: str, source: str) -> GovernancePolicy:
    """The single GovernancePolicy of a file's text, validated, or :class:`PolicyFileError`
    naming the field of what is wrong (``source`` names the file in the error)."""
    docs = [
        d
        for d in load_documents(text, source)
        if isinstance(d, Mapping) and d.get("kind") == "GovernancePolicy"
    ]
    if len(docs) != 1:
        raise PolicyFileError(
            source, [Issue("<file>", f"expected exactly one GovernancePolicy, found {len(docs)}")]
        )
    result = validate_document(docs[0])
    if not result.ok or not isinstance(result.document, GovernancePolicy):
        raise PolicyFileError(source, result.issues)
    return result.document


def policy_from_bytes(data: bytes, source: str) -> GovernancePolicy:
    """:func:`policy_from_text` of a file's bytes, which must be UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyFileError(source, [Issue("<file>", "not UTF-8 text")]) from e
    return policy_from_text(text, source)


def read_policy_file(path: str | os.PathLike[str]) -> bytes:
    """A policy file's bytes, or :class:`PolicyFileError` saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PolicyFileError(str(path), [Issue("<file>", f"cannot read: {e.strerror}")]) from e


def load_policy_file(path: str) -> GovernancePolicy:
    """Load the single GovernancePolicy of a file, or raise :class:`PolicyFileError`."""
    return policy_from_bytes(read_policy_file(path), path)
