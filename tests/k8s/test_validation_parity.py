"""`haltgate policy validate` gives the apiserver's verdict on numeric edges: the same YAML
text, through our loader and validator, and through kubectl to the real apiserver's CRD
schema (server-side dry run)."""

from __future__ import annotations

import pytest

from haltgate.governance.validation import load_documents, validate_document
from haltgate.testbed.controlplane import ControlPlane

pytestmark = pytest.mark.usefixtures("haltgate_crds")

EDGES = [
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    ".inf",
    "-.inf",
    ".nan",
    "1e400",
    "1.0e400",
    "1e3",
    "1.5",
    "1000.0",
    "0x10",
    "'5'",
    "true",
]


def text(namespace: str, field: str, value: str) -> str:
    return f"""apiVersion: haltgate.dev/v1alpha1
kind: GovernancePolicy
metadata: {{name: edge, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: a}}}}
  budgets:
    {field}: {{limit: {value}}}
"""


@pytest.mark.parametrize("field", ["calls", "costUSD"])  # integer, number
def test_numeric_edges_same_verdict_as_the_apiserver(
    kube: ControlPlane, kube_namespace: str, field: str
) -> None:
    differ = []
    for value in EDGES:
        doc = text(kube_namespace, field, value)
        ours = validate_document(load_documents(doc)[0])
        theirs = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=doc)
        assert "failed calling webhook" not in theirs.stderr, theirs.stderr
        if ours.ok != (theirs.returncode == 0):
            differ.append(
                (value, ours.ok, [str(i) for i in ours.errors], theirs.stderr.strip()[:200])
            )
    assert differ == []
