"""The GovernancePolicy and BudgetPool specifications: the one source of truth.

These pydantic models are what the sidecar loads, what the admission webhook validates and
what the CRD OpenAPI schemas in ``crds/`` are generated from (``hack/crdgen.py``).
Field names are camelCase on the wire (as Kubernetes users write them) and snake_case in
Python. Every field carries a description: it becomes the CRD's documentation, shown by
``kubectl explain``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_GROUP = "haltgate.dev"
API_VERSION = "v1alpha1"
API_GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"


class Spec(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


# --------------------------------------------------------------------------- enums


class FailureType(StrEnum):
    """Typed halt failures (EmoCore's taxonomy)."""

    EXHAUSTION = "EXHAUSTION"
    """A spend budget (calls, tokens, cost, time) is used up."""
    STAGNATION = "STAGNATION"
    """The agent repeats itself without progress."""
    OVERRISK = "OVERRISK"
    """Accumulated risk passed its limit."""
    SAFETY = "SAFETY"
    """A guardrail or policy forbids the action."""
    EXTERNAL = "EXTERNAL"
    """Halted from outside: an operator, a pool, a cascade."""


class Period(StrEnum):
    RUN = "run"
    HOUR = "hour"
    DAY = "day"


class Window(StrEnum):
    ROLLING = "rolling"
    CALENDAR = "calendar"


class RequestKind(StrEnum):
    LLM = "llm"
    MCP = "mcp"
    HTTP = "http"


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Provider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class TLSMode(StrEnum):
    INSPECT = "inspect"
    PASSTHROUGH = "passthrough"


class GuardAction(StrEnum):
    BLOCK = "block"
    REDACT = "redact"
    LOG = "log"


class Direction(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"
    BOTH = "both"


class PayloadCapture(StrEnum):
    NONE = "none"
    REDACTED = "redacted"
    FULL = "full"


class FailMode(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


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


# --------------------------------------------------------------------------- budgets

NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class PeriodicLimit(Spec):
    """A limit that applies per run, or per hour/day window."""

    limit: int = Field(ge=0, description="Maximum allowed in one period.")
    period: Period = Field(
        default=Period.RUN,
        description="Accounting period: the whole run (until reset), an hour or a day.",
    )
    window: Window = Field(
        default=Window.CALENDAR,
        description=(
            "For hour/day periods: 'calendar' resets at the UTC boundary (xx:00, 00:00); "
            "'rolling' counts the last hour/day from each call's timestamp."
        ),
    )


class TokenBudget(Spec):
    limit: int | None = Field(
        default=None, ge=0, description="Maximum input+output tokens in one period."
    )
    input: int | None = Field(default=None, ge=0, description="Maximum input (prompt) tokens.")
    output: int | None = Field(
        default=None, ge=0, description="Maximum output (completion, incl. reasoning) tokens."
    )
    period: Period = Field(default=Period.RUN, description="Accounting period.")
    window: Window = Field(default=Window.CALENDAR, description="Calendar or rolling window.")


class CostBudget(Spec):
    limit: float = Field(ge=0, description="Maximum spend in US dollars in one period.")
    period: Period = Field(default=Period.RUN, description="Accounting period.")
    window: Window = Field(default=Window.CALENDAR, description="Calendar or rolling window.")


class WallTimeBudget(Spec):
    limit_seconds: float = Field(
        gt=0, description="Seconds from the run's first call after which every call is refused."
    )


class CountLimit(Spec):
    limit: int = Field(ge=1, description="Halt when the count reaches this value.")


class RiskBudget(Spec):
    limit: float = Field(gt=0, description="Halt (OVERRISK) when accumulated risk reaches this.")


class StagnationBudget(Spec):
    window: int = Field(
        ge=2,
        description=(
            "Halt (STAGNATION) after this many consecutive steps without progress: the same "
            "call repeated, the same error repeated, no new tool and no new result."
        ),
    )


class Budgets(Spec):
    calls: PeriodicLimit | None = Field(default=None, description="Number of governed calls.")
    tokens: TokenBudget | None = Field(default=None, description="LLM token budget.")
    cost_usd: CostBudget | None = Field(
        default=None, alias="costUSD", description="Spend in US dollars, from the price table."
    )
    wall_time: WallTimeBudget | None = Field(default=None, description="Run duration budget.")
    consecutive_failures: CountLimit | None = Field(
        default=None, description="Failed calls (upstream 5xx, network errors) in a row."
    )
    identical_retries: CountLimit | None = Field(
        default=None, description="The exact same request repeated in a row."
    )
    risk_score: RiskBudget | None = Field(
        default=None, description="Sum of tool risk weights and guardrail finding risks."
    )
    distinct_tools: CountLimit | None = Field(
        default=None, description="Number of different tools the agent may use in a run."
    )
    distinct_hosts: CountLimit | None = Field(
        default=None, description="Number of different upstream hosts in a run."
    )
    stagnation: StagnationBudget | None = Field(default=None, description="Steps without progress.")
    warn_at: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Fraction of a limit at which a warning is reported before the halt.",
    )


# --------------------------------------------------------------------------- pricing


class ModelPrice(Spec):
    """Prices in US dollars per one million tokens."""

    input: float = Field(ge=0, description="USD per 1M input tokens.")
    output: float = Field(ge=0, description="USD per 1M output tokens.")
    cached_input: float | None = Field(
        default=None, ge=0, description="USD per 1M cached input tokens (defaults to input)."
    )
    cache_write: float | None = Field(
        default=None, ge=0, description="USD per 1M cache-write tokens (defaults to input)."
    )
    reasoning: float | None = Field(
        default=None, ge=0, description="USD per 1M reasoning tokens (defaults to output)."
    )
    context_window: int | None = Field(
        default=None,
        ge=1,
        description="Largest prompt the model accepts, in tokens: the input reserved for a "
        "call that refers to stored context or files (previous_response_id, file_id, image "
        "URLs...). Unknown: such calls are refused (unknown_context_window).",
    )


class Pricing(Spec):
    models: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Overrides of the shipped price table, keyed by model name or glob.",
    )
    unknown_model: Literal["deny", "default"] = Field(
        default="deny",
        description="What to do with a model missing from the table: deny the call, or price "
        "it with 'default'.",
    )
    default: ModelPrice | None = Field(
        default=None, description="Price for unknown models when unknownModel is 'default'."
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


# --------------------------------------------------------------------------- tools


class ArgumentConstraint(Spec):
    path: str = Field(
        pattern=r"^\$(\.[A-Za-z0-9_-]+|\[[0-9]+\])*$",
        description="JSON path into the tool arguments, e.g. $.query or $.files[0].",
    )
    equals: Any | None = Field(default=None, description="The value must equal this.")
    in_: list[Any] | None = Field(
        default=None, alias="in", description="The value must be one of these."
    )
    regex: str | None = Field(default=None, description="The string value must match this.")
    max_length: int | None = Field(
        default=None, ge=0, description="The string or list value is at most this long."
    )


class ToolRule(Spec):
    name: str = Field(min_length=1, max_length=128, description="Rule name, used in audit.")
    action: Action = Field(description="allow or deny. Deny wins over allow.")
    kind: RequestKind | None = Field(default=None, description="Request kind the rule matches.")
    hosts: list[str] = Field(default_factory=list, description="Host globs (any if empty).")
    methods: list[str] = Field(default_factory=list, description="HTTP methods (any if empty).")
    paths: list[str] = Field(default_factory=list, description="URL path globs (any if empty).")
    models: list[str] = Field(default_factory=list, description="LLM model globs.")
    mcp_servers: list[str] = Field(
        default_factory=list, description="MCP server (upstream alias or host) globs."
    )
    mcp_tools: list[str] = Field(default_factory=list, description="MCP tool name globs.")
    arguments: list[ArgumentConstraint] = Field(
        default_factory=list, description="Constraints on tool arguments, all must hold."
    )
    risk: float = Field(
        default=0.0, ge=0, description="Risk weight added to the risk budget per call."
    )


class Tools(Spec):
    default: Action = Field(
        default=Action.DENY, description="Decision when no rule matches. Deny is the safe default."
    )
    rules: list[ToolRule] = Field(default_factory=list, description="Allow and deny rules.")


class McpResourceRule(Spec):
    name: str = Field(min_length=1, max_length=128, description="Rule name, used in audit.")
    action: Action = Field(description="allow or deny. Deny wins over allow.")
    mcp_servers: list[str] = Field(
        default_factory=list,
        description="MCP server (upstream alias or host) globs (any if empty).",
    )
    uris: list[str] = Field(
        default_factory=list,
        description="Resource URI globs, e.g. file:///srv/docs/** (any if empty). Scheme and "
        "host compare case-insensitively; '*' stays within one path segment, '**' crosses "
        "segments.",
    )
    risk: float = Field(
        default=0.0, ge=0, description="Risk weight added to the risk budget per read."
    )


class McpPromptRule(Spec):
    name: str = Field(min_length=1, max_length=128, description="Rule name, used in audit.")
    action: Action = Field(description="allow or deny. Deny wins over allow.")
    mcp_servers: list[str] = Field(
        default_factory=list,
        description="MCP server (upstream alias or host) globs (any if empty).",
    )
    prompts: list[str] = Field(
        default_factory=list, description="Prompt name globs (any if empty)."
    )
    risk: float = Field(
        default=0.0, ge=0, description="Risk weight added to the risk budget per prompt."
    )


class McpResources(Spec):
    default: Action = Field(
        default=Action.DENY,
        description="Decision for resources/read, subscribe and completion of a resource "
        "that no rule matches. Reading data is denied unless allow-listed.",
    )
    rules: list[McpResourceRule] = Field(
        default_factory=list, description="Allow and deny rules over resource URIs."
    )


class McpPrompts(Spec):
    default: Action = Field(
        default=Action.DENY,
        description="Decision for prompts/get and completion of a prompt that no rule "
        "matches. Denied unless allow-listed.",
    )
    rules: list[McpPromptRule] = Field(
        default_factory=list, description="Allow and deny rules over prompt names."
    )


class Mcp(Spec):
    resources: McpResources = Field(
        default_factory=McpResources,
        description="resources/read, resources/subscribe and resource completions.",
    )
    prompts: McpPrompts = Field(
        default_factory=McpPrompts, description="prompts/get and prompt completions."
    )
    sampling: Action = Field(
        default=Action.DENY,
        description="Whether MCP servers may ask the agent's model for completions "
        "(sampling/createMessage). Denied: the capability is removed from initialize and "
        "server requests for it never reach the agent.",
    )
    elicitation: Action = Field(
        default=Action.DENY,
        description="Whether MCP servers may ask the agent for input (elicitation/create). "
        "Denied: the capability is removed from initialize and server requests for it never "
        "reach the agent.",
    )


# --------------------------------------------------------------------------- guardrails


class Detector(Spec):
    enabled: bool = Field(default=True, description="Whether the detector runs.")
    direction: Direction = Field(
        default=Direction.BOTH, description="Scan requests, responses or both."
    )
    action: GuardAction = Field(
        default=GuardAction.BLOCK, description="block, redact (PII only) or log."
    )
    threshold: float = Field(
        default=0.5, ge=0, le=1, description="Score at or above which a finding counts."
    )
    monitor_only: bool = Field(
        default=False, description="Record findings but never block or redact."
    )
    allowlist: list[str] = Field(
        default_factory=list, description="Regular expressions of text never reported."
    )
    risk: float = Field(default=1.0, ge=0, description="Risk added per finding.")


class PIIDetector(Detector):
    entities: list[
        Literal["email", "phone", "credit_card", "iban", "national_id", "ip_address", "dob"]
    ] = Field(default_factory=list, description="Entities to detect (all if empty).")


class PromptInjectionDetector(Detector):
    model: bool = Field(
        default=False,
        description="Also run the offline embedding-model stage on texts the patterns do not "
        "settle (needs the haltgate[guard-model] extra in the sidecar image; without it the "
        "detector reports an error and failMode decides).",
    )


class Guardrails(Spec):
    prompt_injection: PromptInjectionDetector | None = Field(
        default=None, description="Prompt injection and jailbreak detection."
    )
    pii: PIIDetector | None = Field(default=None, description="Personal data detection.")
    secrets: Detector | None = Field(default=None, description="Credential detection.")
    fail_mode: FailMode = Field(
        default=FailMode.CLOSED, description="A detector error blocks (closed) or passes (open)."
    )


# --------------------------------------------------------------------------- opa, audit


class ConfigMapKeyRef(Spec):
    name: str = Field(min_length=1, description="ConfigMap name (same namespace).")
    key: str = Field(min_length=1, description="Key holding the Rego module.")


class OPA(Spec):
    rego: str | None = Field(default=None, description="Inline Rego module.")
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="Rego module from a ConfigMap."
    )
    decision_path: str = Field(
        default="haltgate/decision",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$",
        description="Path of the rule queried, e.g. haltgate/decision (data.haltgate.decision).",
    )
    timeout_ms: int = Field(default=50, ge=1, le=10000, description="Decision timeout.")
    fail_mode: FailMode = Field(
        default=FailMode.CLOSED, description="OPA unreachable or slow: deny (closed) or allow."
    )
    cache_ttl_seconds: float = Field(
        default=0, ge=0, description="Cache identical decisions this long (0: no cache)."
    )


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


class Engine(Spec):
    type: Literal["builtin", "emocore"] = Field(
        default="builtin", description="Budget engine: haltgate's builtin or emocore."
    )
    profile: str | None = Field(default=None, description="emocore profile name.")


# --------------------------------------------------------------------------- flows


class FlowEndpoint(Spec):
    """Which tool calls a flow rule's source or sink is: every matcher given must match.

    Only tool calls are sources and sinks: plain HTTP calls of every method and MCP
    ``tools/call`` and ``resources/read`` (LLM calls are neither)."""

    any_tool_result: bool = Field(
        default=False,
        description="Sources only: every tool result counts (any HTTP tool answer, any MCP "
        "tools/call or resources/read answer). The other matchers then narrow nothing.",
    )
    kind: Literal["http", "mcp"] | None = Field(
        default=None, description="Request kind: http or mcp (any tool call if unset)."
    )
    upstreams: list[str] = Field(
        default_factory=list, description="Globs over the spec.upstreams alias."
    )
    hosts: list[str] = Field(default_factory=list, description="Host globs, case-insensitive.")
    methods: list[str] = Field(default_factory=list, description="HTTP methods, e.g. POST, PUT.")
    paths: list[str] = Field(
        default_factory=list,
        description="URL path globs ('*' within one segment, '**' across segments).",
    )
    mcp_servers: list[str] = Field(
        default_factory=list, description="MCP server (upstream alias or host) globs."
    )
    mcp_tools: list[str] = Field(default_factory=list, description="MCP tool name globs.")


class FlowRule(Spec):
    name: str = Field(
        min_length=1, max_length=128, description="Rule name, used in refusals and audit."
    )
    sources: list[FlowEndpoint] = Field(
        min_length=1,
        description="Untrusted sources: once the run has received an answer from any of "
        "them, the run is tainted for this rule.",
    )
    sinks: list[FlowEndpoint] = Field(
        min_length=1,
        description="Sensitive sinks: calls to any of them are refused (SAFETY) once the "
        "run is tainted.",
    )
    action: Literal["deny", "approval"] = Field(
        default="deny",
        description="What happens to a sink call of a tainted run: 'deny' refuses it "
        "(403 flow_denied); 'approval' refuses it with an approval id (403 "
        "flow_approval_required) until an operator approves that exact call out of band "
        "(admin API POST /flows/approve); the approved call then passes once.",
    )
    scope: Literal["run", "calls"] = Field(
        default="run",
        description="How long a taint lasts: the whole run (until an operator reset "
        "starts a new one), or 'calls': the windowCalls governed calls after the last "
        "answer from a source.",
    )
    window_calls: int | None = Field(
        default=None,
        ge=1,
        description="With scope 'calls': how many governed calls after the last untrusted "
        "answer the sinks stay closed.",
    )


# --------------------------------------------------------------------------- policy


class GovernancePolicySpec(Spec):
    selector: LabelSelector = Field(
        default_factory=LabelSelector, description="Agent pods this policy governs."
    )
    engine: Engine = Field(default_factory=Engine, description="Budget engine choice.")
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
