"""The one error type of the test bed: a server that could not start or answer in time."""

from __future__ import annotations

from pathlib import Path

_LOG_TAIL_BYTES = 8000


def log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log file, or a note that there is none."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError as e:
        return f"<no log at {path}: {e.strerror}>"
    prefix = "...\n" if size > limit else ""
    return prefix + data.decode("utf-8", "replace")


class TestbedError(RuntimeError):
    """A test-bed server failed to start, answer or stop. The message names its log."""

    __test__ = False  # not a test class, despite the name pytest matches

    def __init__(self, message: str, log: Path | None = None) -> None:
        self.log = log
        if log is not None:
            message = f"{message}\n--- last lines of {log} ---\n{log_tail(log)}"
        super().__init__(message)
