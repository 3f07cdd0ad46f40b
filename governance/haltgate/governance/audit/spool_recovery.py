"""Audit spool recovery: repair torn tails and make a spool durable after a crash.

Recovery (writer start, or a shipper finding no live writer): every segment's frames are
checked; a frame that is short or fails its CRC ends the valid part of its segment: the
bytes from there on are moved to ``<segment>.torn-<offset>`` and the segment is truncated,
so every record before it is kept and shipped. Chain heads come from the newest checkpoint
plus the records after it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.record import ChainHead
from haltgate.governance.audit.spool import (
    MAGIC,
    SpoolPosition,
    flocked,
    fsync_dir,
    iter_frames,
    list_segments,
    read_checkpoint,
    read_durable,
    read_heads,
    segment_path,
    write_durable,
)

__all__ = ["needs_settling", "recover", "settle"]

log = logging.getLogger("haltgate.audit.spool")


def needs_settling(directory: Path) -> bool:
    """True when the newest segment holds bytes past the durable mark."""
    segments = list_segments(directory)
    if not segments:
        return False
    durable = read_durable(directory)
    try:
        size = segment_path(directory, segments[-1]).stat().st_size
    except FileNotFoundError:
        return False
    return durable != SpoolPosition(segments[-1], size)


def settle(
    directory: Path, metrics: AuditMetrics | None = None, *, heads: bool = True
) -> dict[str, ChainHead]:
    """Recover the spool and make all of it durable; call with ``writer.lock`` held.

    Runs when a writer starts, and when a shipper finds no writer alive (an orphaned spool):
    the records a crashed writer left in the page cache are fsync'd, and the durable mark
    moves to the end of the newest segment."""
    with flocked(directory / "compact.lock"):
        found = recover(directory, metrics, heads=heads)
    segments = list_segments(directory)
    if segments:
        path = segment_path(directory, segments[-1])
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        write_durable(directory, SpoolPosition(segments[-1], size))
    return found


def recover(
    directory: Path, metrics: AuditMetrics | None = None, *, heads: bool = True
) -> dict[str, ChainHead]:
    """Repair torn tails and return the chain heads of everything in the spool (``heads``
    False: repair only, for a shipper that does not seal records).

    Heads come from the newest segment that opens with a checkpoint plus the records from
    there on; without any checkpoint, from ``heads.json`` plus every record. Called with
    ``compact.lock`` held, so the shipper cannot remove segments while we read them.
    """
    segments = list_segments(directory)
    for number in segments:
        path = segment_path(directory, number)
        data = path.read_bytes()
        _, stop, reason = iter_frames(data, number)
        if reason is not None:
            _move_tail_aside(path, data, stop, reason)
            if metrics is not None:
                metrics.torn_frames.inc()
    if not heads:
        return {}
    found: dict[str, ChainHead] | None = None
    replay = segments
    for index in range(len(segments) - 1, -1, -1):
        found = read_checkpoint(directory, segments[index])
        if found is not None:
            replay = segments[index:]
            break
    if found is None:
        found = read_heads(directory)
    for number in replay:
        frames, _, _ = iter_frames(segment_path(directory, number).read_bytes(), number)
        for frame in frames:
            if frame.is_checkpoint:
                continue
            doc = orjson.loads(frame.data)
            found[doc["chain_id"]] = ChainHead(int(doc["seq"]), str(doc["hash"]))
    return found


def _move_tail_aside(path: Path, data: bytes, stop: int, reason: str) -> None:
    aside = path.with_name(f"{path.name}.torn-{stop}")
    log.error(
        "audit spool: %s in %s at byte %d; keeping %d bytes before it, moving %d bytes to %s",
        reason,
        path.name,
        stop,
        stop,
        len(data) - stop,
        aside.name,
    )
    aside.write_bytes(data[stop:])
    with path.open("r+b") as f:
        if stop == 0:
            f.truncate(0)
            f.write(MAGIC)
        else:
            f.truncate(stop)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)
