"""Content guardrails: prompt injection, personal data and credentials, both directions.

Public front; internal modules import each other by module. Use::

    g = Guardrails.from_spec(spec.guardrails)
    result = g.scan(text, "request")          # ScanResult(findings, blocked, redacted_text, risk)
    result = g.scan_json(body, "response")    # also redacted_obj
    s = g.stream("response"); s.feed(delta); s.close()
    ChatStreamGuard(g).on_event(sse_json)    # provider-aware SSE events
"""

from haltgate.governance.guardrails.base import (
    Candidate,
    Detector,
    Finding,
    ScanDirection,
    ScanResult,
)
from haltgate.governance.guardrails.engine import DetectorSettings, Guardrails
from haltgate.governance.guardrails.injection import InjectionDetector
from haltgate.governance.guardrails.pii import PIIDetector
from haltgate.governance.guardrails.redaction import Redactor
from haltgate.governance.guardrails.secrets import SecretsDetector
from haltgate.governance.guardrails.sse import ChatStreamGuard
from haltgate.governance.guardrails.stream_scanner import StreamChunk, StreamScanner

__all__ = [
    "Candidate",
    "ChatStreamGuard",
    "Detector",
    "DetectorSettings",
    "Finding",
    "Guardrails",
    "InjectionDetector",
    "PIIDetector",
    "Redactor",
    "ScanDirection",
    "ScanResult",
    "SecretsDetector",
    "StreamChunk",
    "StreamScanner",
]
