"""Authorization rule sections of the policy: tools, MCP methods, information flows.

``spec.tools`` (allow/deny rules over calls and tool arguments), ``spec.mcp`` (resources,
prompts, sampling, elicitation) and ``spec.flows`` (sinks refused once untrusted content
entered the run).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from haltgate.governance.policy_base import Action, RequestKind, Spec


class ArgumentConstraint(Spec):
    path: str = Field(
        pattern=r"^\$(\.[A-Za-z0-9_-]+|\[[0-9]+\])*$",
        description="JSON path into the tool arguments, e.g. $.query or $.files[0]; for "
        "rules of kind http, a query parameter: $.query.<name>.",
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
        description="Sensitive sinks: once the run is tainted, calls to any of them are "
        "refused (SAFETY), held for approval or checked for untrusted values, by action.",
    )
    action: Literal["deny", "approval", "deny-untrusted-values"] = Field(
        default="deny",
        description="What happens to a sink call of a tainted run: 'deny' refuses it "
        "(403 flow_denied); 'approval' refuses it with an approval id (403 "
        "flow_approval_required) until an operator approves that exact call out of band "
        "(admin API POST /flows/approve); the approved call then passes once; "
        "'deny-untrusted-values' refuses it (403 flow_untrusted_value, naming the argument) "
        "only when one of its arguments carries a value (address, URL, host, long number, "
        "id, quoted phrase) that appeared in the untrusted content, and lets other calls go.",
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
