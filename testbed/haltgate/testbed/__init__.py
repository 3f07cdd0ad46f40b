"""The haltgate test bed: real PostgreSQL, OPA, etcd and kube-apiserver for tests and people.

Each module starts one kind of server as a child process with bounded waits, keeps its log
in a file, and stops it cleanly. ``tests/conftest.py`` wraps them in session-scoped pytest
fixtures; ``python -m haltgate.testbed up|down|status`` runs the control plane for people.
"""

from haltgate.testbed.errors import TestbedError

__all__ = ["TestbedError"]
