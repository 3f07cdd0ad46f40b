"""Secrets on the generated development set (testbed.secret_corpus: 504 random credentials
in context, 1,198 look-alikes), documentation examples, and credentials hidden in encodings
(found on the decoded run, redacted over the encoded one)."""

from __future__ import annotations

import base64
from collections import Counter

import pytest

from haltgate.governance.guardrails import Guardrails, PIIDetector, SecretsDetector
from haltgate.governance.policy_checks import Guardrails as GuardrailsSpec
from haltgate.testbed.secret_corpus import generate

DETECTOR = SecretsDetector()
TOKEN = "ghp_" + "Zr4Kq9Vx2Lm7Np1Bt6Hc3Wd8Fs5Jy0Ge2Ua9"


def _found(text: str) -> set[str]:
    return {c.entity for c in DETECTOR.detect(text) if c.score >= 0.5}


def test_generated_set_recall_and_lookalike_false_positives() -> None:
    positives, lookalikes = generate()
    assert len(positives) >= 500 and len(lookalikes) >= 1000
    missed = Counter(s.kind for s in positives if s.kind not in _found(s.text))
    flagged = Counter(s.kind for s in lookalikes if _found(s.text))
    assert sum(missed.values()) <= 0.02 * len(positives), missed
    assert sum(flagged.values()) <= 0.01 * len(lookalikes), flagged


@pytest.mark.parametrize(
    "text",
    [
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "curl https://api.stripe.com/v1/charges -u sk_test_4eC39HqLyjWDarjtT1zdp7dc:",
        "token_id = 0c58e48b-800a-47f1-9be5-c5d68669b5a8",
        'password = os.environ["DB_PASSWORD"]',
    ],
)
def test_documented_examples_and_references_are_not_secrets(text: str) -> None:
    assert _found(text) == set()


def test_a_real_looking_key_in_the_same_places_still_is() -> None:
    assert _found("aws_access_key_id = AKIA2E3MBFQXKZ7VJ4NA") == {"aws_key"}
    assert "generic_secret" in _found("token = 0c58e48b800a47f19be5c5d68669b5a8aa")


def test_jwt_span_covers_its_signature() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiIsInNjb3BlIjoiYWRtaW4ifQ."
        "q1Wm8vX3kT9bR2nL5cJ7hF0dG4sA6pE8yU1iO3zKx2M"
    )
    (c,) = [c for c in DETECTOR.detect(f"session {jwt} end") if c.entity == "jwt"]
    assert f"session {jwt} end"[c.start : c.end] == jwt


ENCODINGS = {
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "hex": lambda s: s.encode().hex(),
    "percent": lambda s: "".join(f"%{b:02X}" for b in s.encode()),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encoded_credential_is_found_on_its_run(encoding: str) -> None:
    run = ENCODINGS[encoding](TOKEN)
    text = f"config blob: {run} (from the build log)"
    (c,) = [c for c in DETECTOR.detect(text) if c.entity == "github_token"]
    assert (text[c.start : c.end], c.encoding) == (run, encoding)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encoded_credential_is_redacted_and_blocked_by_policy(encoding: str) -> None:
    run = ENCODINGS[encoding](TOKEN)
    text = f"config blob: {run} (from the build log)"
    redact = Guardrails.from_spec(GuardrailsSpec.model_validate({"secrets": {"action": "redact"}}))
    r = redact.scan(text, "request")
    assert r.redacted_text == "config blob: <GITHUB_TOKEN_1> (from the build log)"
    assert r.findings[0].to_dict()["encoding"] == encoding
    block = Guardrails.from_spec(GuardrailsSpec.model_validate({"secrets": {"action": "block"}}))
    assert block.scan_json({"note": text}, "response").blocked


def test_encoded_email_is_found_by_pii() -> None:
    run = base64.b64encode(b"ann.lee@example.org").decode()
    (c,) = PIIDetector(["email"]).detect(f"user={run}")
    assert (c.entity, c.encoding, c.start) == ("email", "base64", 5)


def test_random_blobs_stay_clean() -> None:
    """Random base64 never decodes to text the rescan could misread. (Hex is left out for
    PII: a Luhn-valid digit run inside a hex string is a known card false positive of the
    plain scan, decoding or not.)"""
    import random

    rng = random.Random(3)
    blobs = [base64.b64encode(rng.randbytes(rng.randrange(16, 400))).decode() for _ in range(300)]
    pii = PIIDetector()
    assert not [b for b in blobs if _found(b) or any(c.score >= 0.5 for c in pii.detect(b))]
    hexes = [rng.randbytes(20).hex() for _ in range(300)]
    assert not [h for h in hexes if _found(h)]


def test_rescan_is_bounded_by_the_span_limits() -> None:
    from haltgate.governance.guardrails.decode import DEFAULT_LIMITS

    runs = [base64.b64encode(f"ghp_{i:02d}{TOKEN[6:]}".encode()).decode() for i in range(3 * 8)]
    found = [c for c in DETECTOR.detect(" ".join(runs)) if c.encoding == "base64"]
    assert 0 < len(found) <= DEFAULT_LIMITS.max_spans
