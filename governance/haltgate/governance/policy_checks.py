"""Content and decision check sections of the policy: guardrail detectors and OPA.

``spec.guardrails`` (prompt injection, PII and secret detectors) and ``spec.opa`` (the
Rego policy, where it comes from, and how its decisions are asked for).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from haltgate.governance.policy_base import Direction, FailMode, GuardAction, Spec


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
    fast_model: bool = Field(
        default=True,
        description="Also run the character n-gram linear model (shipped in the package, "
        "numpy) on every text, with per-channel thresholds (request text, tool results): a "
        "fast stage whose suspicious windows are stacked with the patterns and read by the "
        "model stage. On by default; false leaves the patterns alone.",
    )
    model_budget_ms: int | None = Field(
        default=None,
        ge=1,
        le=600_000,
        description="Model time one call may spend on its texts (request, answer, stream "
        "events), in milliseconds; once spent, further texts of the call are not scored by "
        "the model: the detector reports an error and failMode decides (closed: refused or "
        "the stream cut; open: passed, counted as fail-open). Unset: no bound.",
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
