"""Fixtures of the guardrail tests: compiled policies and the labelled corpora."""

from __future__ import annotations

import pytest

from haltgate.governance import policy_checks
from haltgate.governance.guardrails import Guardrails
from tests.guardrails import corpus


def make_guardrails(doc: dict[str, object]) -> Guardrails:
    """Guardrails from a ``spec.guardrails`` mapping as written in a policy (camelCase)."""
    return Guardrails.from_spec(policy_checks.Guardrails.model_validate(doc))


@pytest.fixture(scope="session")
def guardrails_redact() -> Guardrails:
    """Injection blocks; PII and secrets are redacted."""
    return make_guardrails(
        {"promptInjection": {}, "pii": {"action": "redact"}, "secrets": {"action": "redact"}}
    )


@pytest.fixture(scope="session")
def injection_corpus() -> list[corpus.Sample]:
    return corpus.injection_samples()


@pytest.fixture(scope="session")
def pii_corpus() -> list[corpus.Sample]:
    return corpus.pii_samples()


@pytest.fixture(scope="session")
def secrets_corpus() -> list[corpus.Sample]:
    return corpus.secrets_samples()
