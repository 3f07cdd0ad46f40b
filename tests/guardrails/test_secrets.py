"""Secret detector on the labelled corpus and targeted cases."""

from __future__ import annotations

from haltgate.governance.guardrails import SecretsDetector
from haltgate.governance.guardrails.secrets import shannon_entropy
from tests.guardrails import corpus
from tests.guardrails.metrics import evaluate

DETECTOR = SecretsDetector()


def _types(text: str) -> set[str]:
    return {c.entity for c in DETECTOR.detect(text) if c.score >= 0.5}


def test_corpus_recall_and_false_positive_rate(secrets_corpus: list[corpus.Sample]) -> None:
    scores = evaluate(
        secrets_corpus, lambda s: (s.kind in _types(s.text)) if s.label else bool(_types(s.text))
    )
    assert scores.recall >= 0.98, scores
    assert scores.fp_rate <= 0.01, scores


def test_private_key_span_is_the_whole_block() -> None:
    block = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----"
    text = f"before\n{block}\nafter"
    (c,) = DETECTOR.detect(text)
    assert text[c.start : c.end] == block


def test_url_password_span_is_the_password_only() -> None:
    text = "postgres://app:Tr0ub4dor&3x@db:5432/x"
    spans = {text[c.start : c.end] for c in DETECTOR.detect(text)}
    assert spans == {"Tr0ub4dor&3x"}


def test_github_token_span_is_not_shrunk_to_its_prefix() -> None:
    token = "ghp_XNv1syeefnLOpaMxxNDi9LE1Ki3ylOjt6o0N"
    (c,) = DETECTOR.detect(f"token {token}")
    assert c.end - c.start == len(token)


def test_gitlab_runner_token_is_found_without_a_gl_elsewhere() -> None:
    """The GitLab plugin was gated on "gl" alone, which a runner registration token
    (``GR1348941...``) does not contain: found only when "gl" happened to be nearby."""
    token = "GR1348941" + "xq7Vb2NnR4kT9mWc8pLzY3sd"
    for text in (f"runner token {token}", f"register with {token} please"):
        assert [text[c.start : c.end] for c in DETECTOR.detect(text)] == [token], text


def test_entropy() -> None:
    assert shannon_entropy("") == 0
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == 2
