"""The spool writer's files: the active segment (opened, rolled, synced) and the
``durable`` file that publishes the synced position to the shipper."""

from __future__ import annotations

import contextlib
import os

from haltgate.governance.audit.record import ChainHead
from haltgate.governance.audit.spool import (
    MAGIC,
    SpoolPosition,
    checkpoint_frame,
    encode_durable,
    fsync_dir,
    segment_path,
)
from haltgate.governance.audit.spool_batch import Batch
from haltgate.governance.audit.spool_settings import SpoolSettings

__all__ = ["SegmentFiles"]


class SegmentFiles:
    """The active segment's descriptor and sizes, and the chain heads of what is in it;
    :class:`~haltgate.governance.audit.spool_writer.SpoolWriter` builds on it."""

    settings: SpoolSettings
    _fd: int
    """The active segment (``O_APPEND``)."""
    _durable_fd: int
    _segment: int
    _size: int
    """Bytes of the active segment known durable (synced)."""
    _base_size: int
    _written: dict[str, ChainHead]
    """Chain heads of every durable record."""
    _unsynced: Batch | None

    def _close_fds(self) -> None:
        for fd in (self._fd, self._durable_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._durable_fd = -1

    def free_bytes(self) -> int:
        """Bytes free for this spool on its volume (for an unprivileged writer)."""
        st = os.statvfs(self.settings.directory)
        return st.f_bavail * st.f_frsize

    def _open_segment(self, number: int, *, create: bool) -> None:
        path = segment_path(self.settings.directory, number)
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        if create:
            # _written holds the heads of every record written so far: exactly what
            # precedes this segment (the batch that made us roll is not written yet).
            try:
                os.write(fd, MAGIC + checkpoint_frame(self._written))
                os.fsync(fd)
                fsync_dir(self.settings.directory)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(path)  # no record in it yet: nothing is lost
                raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segment = number
        self._size = os.fstat(fd).st_size
        # Below this size the segment holds no record yet, so rolling it would be pointless.
        self._base_size = self._size if create else len(MAGIC)

    def _roll(self) -> None:
        self._open_segment(self._segment + 1, create=True)

    def _sync_written(self, nbytes: int, heads: list[tuple[str, ChainHead]]) -> None:
        """fdatasync what was written: its ``nbytes`` and chain ``heads`` are then durable
        (counted, published in ``durable``). Raises ``OSError``."""
        if self.settings.fsync:
            os.fdatasync(self._fd)
        self._unsynced = None
        self._size += nbytes
        self._written.update(heads)
        os.pwrite(self._durable_fd, encode_durable(SpoolPosition(self._segment, self._size)), 0)
