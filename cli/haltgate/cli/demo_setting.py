"""The demo's fixed setting: names, addresses, UIDs, ports and the policy's Rego."""

from __future__ import annotations

NAMESPACE = "agents"
OPERATOR_NAMESPACE = "haltgate-system"
POLICY_NAME = "researcher"
POD_NAME = "researcher-7d4b9c6f5-x2kqp"
POD_IP = "10.77.0.2"
"""The pod namespace's address (testbed/haltgate/testbed/netns.py's topology)."""
CALL_LIMIT = 8
"""The calls budget of the demo policy: the agent is halted (EXHAUSTION) after this many."""
MAX_AGENT_STEPS = 30
"""Bound of the agent loop, should the halt never come (then the demo fails)."""
SIDECAR_UID = 17337
AGENT_UID = 1000
OPA_PORT = 8181
STANDIN_PORTS = {"llm": 8080, "mcp": 8081}
"""Ports of the stand-ins inside their network namespace (netns mode)."""
AWS_KEY_PROMPT = (
    "deploy with key AKIA2E3MBFQXKZ7VJ4NA and secret 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"
)

REGO = """package haltgate

import rego.v1

default decision := {"allow": true}

# Large models need an approval this agent does not have.
decision := {"allow": false, "reason": "gpt-5 models need approval", "failure_type": "SAFETY"} if {
    input.request.kind == "llm"
    startswith(input.request.model, "gpt-5")
}
"""
