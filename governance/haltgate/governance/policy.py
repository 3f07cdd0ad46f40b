"""The GovernancePolicy and BudgetPool specifications: the one source of truth.

These pydantic models are what the sidecar loads, what the admission webhook validates and
what the CRD OpenAPI schemas in ``crds/`` are generated from (``hack/crdgen.py``).
Field names are camelCase on the wire (as Kubernetes users write them) and snake_case in
Python. Every field carries a description: it becomes the CRD's documentation, shown by
``kubectl explain``.

This module holds the documents (the two specs, their top-level sections: selector,
upstreams, audit, limits, pools); the other sections live in modules of their own:
``policy_budgets`` (budgets, pricing, engine), ``policy_rules`` (tools, MCP, flows),
``policy_checks`` (guardrails, OPA), on the vocabulary of ``policy_base``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from haltgate.governance.drift_policy import Drift
from haltgate.governance.policy_base import PayloadCapture, Provider, RequestKind, Spec, TLSMode
from haltgate.governance.policy_budgets import (
    Budgets,
    CostBudget,
    Engine,
    PeriodicLimit,
    Pricing,
    TokenBudget,
)
from haltgate.governance.policy_checks import OPA, Guardrails
from haltgate.governance.policy_rules import FlowRule, Mcp, Tools

API_GROUP = "haltgate.dev"
API_VERSION = "v1alpha1"
API_GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# --------------------------------------------------------------------------- selector


class LabelSelectorRequirement(Spec):
    key: str = Field(description="Label key the requirement applies to.", min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: list[str] = Field(
        default_factory=list,
        description="Values for In/NotIn; must be empty for Exists/DoesNotExist.",
    )


class LabelSelector(Spec):
    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Pods whose labels contain all these pairs."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, description="Set-based requirements, all of which must hold."
    )


# --------------------------------------------------------------------------- upstreams


class Upstream(Spec):
    name: str = Field(
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        max_length=63,
        description="Alias used in explicit mode: http://127.0.0.1:17000/<name>/...",
    )
    url: str = Field(
        pattern=r"^https?://[^/\s]+(/.*)?$",
        description="Base URL of the upstream (scheme, host, optional port and path).",
    )
    kind: RequestKind = Field(description="What the upstream serves: llm, mcp or http tool.")
    provider: Provider | None = Field(
        default=None, description="LLM API dialect for usage parsing (llm kind only)."
    )
    tls: TLSMode = Field(
        default=TLSMode.INSPECT,
        description="In transparent mode: terminate TLS and govern each request ('inspect'), "
        "or tunnel it and audit the connection only ('passthrough').",
    )
    agent: bool = Field(
        default=False,
        description="The upstream is another governed agent: calls to it carry the "
        "x-haltgate-chain header (trace id, depth, path) and are checked for cascades.",
    )


# --------------------------------------------------------------------------- audit, limits


class Audit(Spec):
    payload: PayloadCapture = Field(
        default=PayloadCapture.NONE, description="What of request/response bodies is recorded."
    )
    retention_days: int | None = Field(
        default=None, ge=1, description="Retention hint for the audit database."
    )
    on_spool_full: Literal["block", "continue"] = Field(
        default="block",
        description="When the local spool is full: refuse new calls (block) or keep going "
        "with an alert (continue).",
    )
    durability: Literal["strict", "overlapped"] = Field(
        default="strict",
        description="strict: a call's intent record is on disk (fsync) before the call is "
        "forwarded. overlapped (weaker, opt-in): the fsync overlaps connecting and sending "
        "upstream; the answer reaches the agent only once the intent is durable, but a crash "
        "in that window can lose the intent of a call the upstream served.",
    )


class Limits(Spec):
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest request body accepted."
    )
    upstream_timeout_seconds: float = Field(
        default=600,
        gt=0,
        description="Longest wait for an upstream's answer to start, and longest silence "
        "inside it (seconds). Not a total: a stream that keeps sending is never "
        "cut by it.",
    )
    path_parameters: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="Path segments with ';' parameters (/admin;x): refused as ambiguous "
        "(upstreams read them differently), or allowed: rules then match the path without "
        "them and the upstream receives them unchanged.",
    )


# --------------------------------------------------------------------------- policy


class GovernancePolicySpec(Spec):
    selector: LabelSelector = Field(
        default_factory=LabelSelector, description="Agent pods this policy governs."
    )
    engine: Engine = Field(default_factory=Engine, description="Budget engine choice.")
    enforcement: Literal["enforce", "monitor"] = Field(
        default="enforce",
        description="enforce: refusals are applied. monitor: every control runs, is audited "
        "and counted as would_refuse, and nothing is refused; the boundary (framing, body "
        "limits, strict JSON, paths) is enforced in both (docs/rollout.md).",
    )
    upstreams: list[Upstream] = Field(
        default_factory=list, description="Known upstreams (LLM APIs, MCP servers, HTTP tools)."
    )
    budgets: Budgets = Field(default_factory=Budgets, description="Budgets per agent run.")
    pricing: Pricing = Field(default_factory=Pricing, description="Model price overrides.")
    tools: Tools = Field(default_factory=Tools, description="Tool authorization rules.")
    mcp: Mcp = Field(
        default_factory=Mcp,
        description="MCP methods other than tools: resources, prompts, sampling, elicitation.",
    )
    guardrails: Guardrails = Field(default_factory=Guardrails, description="Content detectors.")
    flows: list[FlowRule] = Field(
        default_factory=list,
        description="Information-flow rules: after untrusted content entered the run, "
        "sensitive sinks are refused (docs/policies.md).",
    )
    drift: Drift | None = Field(
        default=None,
        description="Behaviour drift detection: per-agent baselines of cost, tokens, tool "
        "mix, refusal and error rates and latency; a sustained drift warns or halts "
        "(docs/drift.md).",
    )
    opa: OPA | None = Field(default=None, description="Open Policy Agent decision.")
    audit: Audit = Field(default_factory=Audit, description="Audit settings.")
    limits: Limits = Field(default_factory=Limits, description="Request limits.")
    pool: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of a BudgetPool (same namespace) this agent draws from.",
    )
    on_halt: Literal["deny", "deny-and-notify"] = Field(
        default="deny", description="deny, or deny and emit a Kubernetes Event."
    )


class CascadeRules(Spec):
    max_chain_depth: int | None = Field(
        default=None, ge=1, description="Halt the pool when an agent call chain is deeper."
    )
    detect_loops: bool = Field(
        default=True, description="Halt the pool when a call chain revisits an agent."
    )
    halt_storm: HaltStorm | None = Field(
        default=None, description="Halt the pool after N member halts within a window."
    )
    error_storm: ErrorStorm | None = Field(
        default=None,
        description="Halt the pool after N failed upstream calls of its members within a window.",
    )


class HaltStorm(Spec):
    halts: int = Field(ge=1, description="Member halts that make a storm.")
    window_seconds: float = Field(gt=0, description="Window the halts are counted in.")


class ErrorStorm(Spec):
    errors: int = Field(ge=1, description="Failed member calls that make a storm.")
    window_seconds: float = Field(gt=0, description="Window the failures are counted in.")


class BudgetPoolSpec(Spec):
    calls: PeriodicLimit | None = Field(default=None, description="Shared call budget.")
    tokens: TokenBudget | None = Field(default=None, description="Shared token budget.")
    cost_usd: CostBudget | None = Field(
        default=None, alias="costUSD", description="Shared spend in US dollars."
    )
    lease_fraction: float = Field(
        default=0.1, gt=0, le=1, description="Fraction of what remains a sidecar leases at once."
    )
    lease_seconds: float = Field(
        default=30, gt=0, description="A lease not renewed within this returns to the pool."
    )
    cascade: CascadeRules = Field(default_factory=CascadeRules, description="Cascade rules.")


CascadeRules.model_rebuild()


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None
    generation: int | None = None


class GovernancePolicy(BaseModel):
    """A whole GovernancePolicy document as ``kubectl apply`` takes it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: Literal["haltgate.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["GovernancePolicy"]
    metadata: ObjectMeta
    spec: GovernancePolicySpec


class BudgetPool(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: Literal["haltgate.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["BudgetPool"]
    metadata: ObjectMeta
    spec: BudgetPoolSpec
