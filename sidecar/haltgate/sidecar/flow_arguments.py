"""The arguments of a sink call that ``deny-untrusted-values`` flow rules compare with
what the run's untrusted content carried (:func:`haltgate.governance.flow_values.argument_values`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from haltgate.governance.flow_values import argument_values
from haltgate.governance.policy_base import RequestKind
from haltgate.sidecar.call import Call

__all__ = ["sink_arguments"]


def sink_arguments(call: Call, headers: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """``(argument path, value)`` of a classified call: an MCP call's tool arguments; an
    HTTP call's host (when the agent chose it, not a policy upstream), path, query, body
    and non-protocol header values."""
    classified, target = call.classified, call.target
    assert classified is not None and target is not None
    view = classified.view
    if view.kind is RequestKind.MCP:
        return argument_values(tool_arguments=[t.arguments for t in view.tool_calls])
    return argument_values(
        host=None if target.upstream is not None else target.host,
        path=target.rule_path,
        query=target.query,
        body=call.body,
        content_type=headers.get("Content-Type"),
        headers=headers.items(),
    )
