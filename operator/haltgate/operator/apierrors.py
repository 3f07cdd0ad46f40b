"""The typed errors an apiserver call raises, shared by the official-client and aiohttp paths."""

from __future__ import annotations


class NotFound(Exception):
    """The object does not exist."""


class Conflict(Exception):
    """The object exists already, or changed since it was read."""


class Forbidden(Exception):
    """RBAC refused the call: in an agent namespace, one that has not opted in (no
    RoleBinding to the operator's agent-namespace ClusterRole, see docs/operator.md)."""


class ApiError(Exception):
    """The apiserver answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
