"""The local audit spool: append-only segment files with group commit.

Layout of a spool directory::

    00000000000000000001.seg   segments, numbered; only the newest one is appended to
    heads.json                 chain heads of segments already shipped and removed
    shipped.json               the shipper's acknowledged position (segment, offset)
    durable                    how far the spool is fsync'd (the shipper reads no further)
    spool.id                   this spool's identity (its shipping progress in PostgreSQL)
    writer.lock / shipper.lock one writer and one shipper at a time (flock)
    compact.lock               held while shipped segments are folded into heads.json

A segment starts with an 8-byte magic and a checkpoint frame (the chain heads of everything
before the segment, so recovery and compaction read one segment, not the whole spool), then
holds record frames. A frame is ``<u32 length><u32 crc32><f64 time>`` and the record's
canonical JSON; the CRC covers time and body, and the time lets the shipper route rows to
monthly partitions without parsing JSON.

The writer thread takes every record queued while the previous commit was in flight, writes
them with one ``write`` and makes them durable with one ``fdatasync``: concurrent calls
share a commit, a lone call pays one. ``intent()`` returns only after its record is durable.
Records nobody waits for (``submit_nowait``: outcomes) do not wake the writer: they go with
the next awaited record's commit, or after ``linger_seconds`` (20 ms) at the latest, so a
call costs one write and one fdatasync, not two.
Records are sealed (chain, sequence number, hashes; ~15 us) by the caller when queued, so
sealing overlaps the commit in flight instead of lengthening the next one. After each commit
the durable position is published in ``durable``; the shipper reads no further.

Recovery (writer start, or a shipper finding no live writer): every segment's frames are
checked; a frame that is short or fails its CRC ends the valid part of its segment: the
bytes from there on are moved to ``<segment>.torn-<offset>`` and the segment is truncated,
so every record before it is kept and shipped. Chain heads come from the newest checkpoint
plus the records after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from haltgate.governance.audit.fit import fit_record
from haltgate.governance.audit.metrics import AuditMetrics
from haltgate.governance.audit.record import AuditRecord, Chainer, ChainHead
from haltgate.governance.audit.sink import (
    AuditError,
    AuditUnavailableError,
    InvalidRecordError,
    SpoolFullError,
    StatePersistError,
)

__all__ = [
    "MAGIC",
    "MAX_FRAME",
    "Frame",
    "SpoolAuditSink",
    "SpoolPosition",
    "SpoolSettings",
    "iter_frames",
    "list_segments",
    "read_heads",
    "write_json_atomic",
]

log = logging.getLogger("haltgate.audit.spool")

MAGIC = b"HGAUD\x00\x01\n"
"""First 8 bytes of every segment (format version 1)."""
_HEADER = struct.Struct("<IId")
MAX_FRAME = 16 * 1024 * 1024
"""A length above this is corruption, not a record. The writer refuses to write a longer
record (and truncates payloads well below it, audit/fit.py): reader and writer agree."""
_MAX_FRAME = MAX_FRAME
CHECKPOINT_TIME = -1.0
"""Frame time that marks a checkpoint frame (records have epoch times >= 0)."""
READ_CHUNK = _MAX_FRAME + _HEADER.size
"""Bytes a reader takes at once: always holds at least one whole frame."""
SEGMENT_SUFFIX = ".seg"
HEADS_FILE = "heads.json"
SHIPPED_FILE = "shipped.json"
DURABLE_FILE = "durable"
SPOOL_ID_FILE = "spool.id"
_DURABLE = struct.Struct("<QQ")


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """How the spool behaves. Validated at construction."""

    directory: Path
    """Spool directory on a volume that survives container restarts."""
    max_bytes: int = 256 * 1024 * 1024
    """Upper bound of all segments together (bytes). Past it, ``on_full`` applies."""
    segment_bytes: int = 16 * 1024 * 1024
    """A segment is closed and a new one started past this size (bytes)."""
    on_full: Literal["block", "continue"] = "block"
    """``block``: raise SpoolFullError (the sidecar refuses the call). ``continue``: drop the
    record, count it in ``haltgate_audit_records_dropped_total`` and log an error."""
    fsync: bool = True
    """fdatasync every commit. Off only in benchmarks of the rest of the path."""
    lock_wait_seconds: float = 5.0
    """How long a starting writer waits for ``writer.lock`` (a shipper settling an orphaned
    spool holds it briefly) before it reports another writer (seconds)."""
    max_payload_bytes: int = 1024 * 1024
    """Largest ``payload`` kept in a record (bytes of its JSON); a larger one is replaced
    by a truncation marker (size, SHA-256, preview; see audit/fit.py) when written."""
    retry_seconds: float = 1.0
    """While the spool cannot write (failed write, full volume), how often the writer
    tries to recover (seconds)."""
    min_free_bytes: int = 256 * 1024
    """Free bytes the volume must have for the spool to be healthy: below it ``/readyz``
    says ``disk_full`` and a failed spool does not resume yet."""
    linger_seconds: float = 0.02
    """Longest a record queued with ``submit_nowait`` (an outcome: nobody waits for it)
    waits for a commit (seconds). It goes with the next awaited record's commit (an
    intent) if one comes sooner: one write and one fdatasync per call, not two."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if not 0 < self.linger_seconds <= 1:
            raise ValueError("spool linger_seconds must be in (0, 1]")
        if self.segment_bytes < 4096:
            raise ValueError("spool segment_bytes must be at least 4096")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError("spool max_bytes must be at least twice segment_bytes")
        if self.on_full not in ("block", "continue"):
            raise ValueError("spool on_full must be 'block' or 'continue'")
        if not 1024 <= self.max_payload_bytes <= MAX_FRAME // 2:
            raise ValueError(f"spool max_payload_bytes must be in [1024, {MAX_FRAME // 2}]")


@dataclass(frozen=True, slots=True, order=True)
class SpoolPosition:
    """A place in the spool: segment number and byte offset in it."""

    segment: int
    offset: int


class Frame(NamedTuple):
    """One record as read back: where it ends and its canonical JSON. A named tuple, not a
    frozen dataclass: the shipper builds one per record, and a tuple is built several
    times faster."""

    segment: int
    offset: int
    end: int
    time: float
    """The record's ``time`` (epoch seconds), from the frame header."""
    data: bytes

    @property
    def is_checkpoint(self) -> bool:
        """A chain-heads checkpoint, not a record."""
        return self.time == CHECKPOINT_TIME


def segment_path(directory: Path, number: int) -> Path:
    """Path of segment ``number``."""
    return directory / f"{number:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """Segment numbers present, ascending."""
    numbers = []
    for entry in os.scandir(directory):
        name = entry.name
        if name.endswith(SEGMENT_SUFFIX) and name[: -len(SEGMENT_SUFFIX)].isdigit():
            numbers.append(int(name[: -len(SEGMENT_SUFFIX)]))
    return sorted(numbers)


def spool_bytes(directory: Path) -> int:
    """Total size of the segments (what ``max_bytes`` bounds)."""
    total = 0
    for entry in os.scandir(directory):
        if entry.name.endswith(SEGMENT_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total


def iter_frames(
    data: bytes, segment: int, base: int = 0, max_frames: int | None = None
) -> tuple[list[Frame], int, str | None]:
    """Parse the frames in ``data``, the bytes of one segment from file offset ``base``.

    Returns the frames (with file offsets), the file offset where parsing stopped and why it
    stopped early (``None`` at a clean end or after ``max_frames``, else a short reason:
    torn or corrupt frame).
    """
    frames: list[Frame] = []
    pos = 0
    if base == 0:
        if len(data) < len(MAGIC):
            return frames, 0, "short segment header" if data else None
        if data[: len(MAGIC)] != MAGIC:
            return frames, 0, "bad segment magic"
        pos = len(MAGIC)
    end = len(data)
    header = _HEADER.size
    while pos < end:
        if max_frames is not None and len(frames) >= max_frames:
            break
        if end - pos < header:
            return frames, base + pos, "short frame header"
        length, crc, when = _HEADER.unpack_from(data, pos)
        if length == 0 or length > _MAX_FRAME:
            return frames, base + pos, f"bad frame length {length}"
        body_start = pos + header
        if body_start + length > end:
            return frames, base + pos, "short frame body"
        body = data[body_start : body_start + length]
        if zlib.crc32(body, zlib.crc32(data[pos + 8 : body_start])) != crc:
            return frames, base + pos, "frame checksum mismatch"
        frames.append(Frame(segment, base + pos, base + body_start + length, when, body))
        pos = body_start + length
    return frames, base + pos, None


def encode_frame(line: bytes, when: float) -> bytes:
    """Frame one canonical JSON line of a record made at ``when`` (epoch seconds)."""
    stamp = struct.pack("<d", when)
    return struct.pack("<II", len(line), zlib.crc32(line, zlib.crc32(stamp))) + stamp + line


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, doc: Any) -> None:
    """Replace ``path`` with ``doc`` durably: temp file, fsync, rename, fsync directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, orjson.dumps(doc))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_heads(directory: Path) -> dict[str, ChainHead]:
    """Chain heads of shipped-and-removed segments (empty when none were removed)."""
    try:
        raw = (directory / HEADS_FILE).read_bytes()
    except FileNotFoundError:
        return {}
    doc = orjson.loads(raw)
    return {chain: ChainHead(int(h["seq"]), str(h["hash"])) for chain, h in doc.items()}


@contextlib.contextmanager
def flocked(path: Path, *, blocking: bool = True, wait_seconds: float = 0.0) -> Iterator[int]:
    """Hold an exclusive ``flock`` on ``path`` for the duration of the block.

    Non-blocking: try for up to ``wait_seconds``, then raise ``AuditUnavailableError``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if blocking:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError as e:
                    if time.monotonic() >= deadline:
                        raise AuditUnavailableError(f"{path} is held by another process") from e
                    time.sleep(0.05)
        yield fd
    finally:
        os.close(fd)


def spool_id(directory: Path) -> str:
    """This spool's id (created on first use): the key of its shipping progress."""
    path = directory / SPOOL_ID_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.01)
        raise AuditUnavailableError(f"{path} is empty") from None
    value = str(uuid.uuid4())
    try:
        os.write(fd, value.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(directory)
    return value


def write_durable(directory: Path, position: SpoolPosition) -> None:
    """Publish how far the spool is durable. Written after the fdatasync that made it so,
    never fsync'd itself: after a power loss it can only be behind, never ahead."""
    fd = os.open(directory / DURABLE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, _encode_durable(position), 0)
    finally:
        os.close(fd)


def _encode_durable(position: SpoolPosition) -> bytes:
    body = _DURABLE.pack(position.segment, position.offset)
    return body + zlib.crc32(body).to_bytes(4, "little")


def read_durable(directory: Path) -> SpoolPosition | None:
    """The durable position, or ``None`` if unknown (no writer ever finished a commit)."""
    for _ in range(3):  # a read racing the writer's 20-byte pwrite: read again
        try:
            data = (directory / DURABLE_FILE).read_bytes()
        except FileNotFoundError:
            return None
        body = data[: _DURABLE.size]
        if (
            len(data) == _DURABLE.size + 4
            and zlib.crc32(body).to_bytes(4, "little") == data[_DURABLE.size :]
        ):
            segment, offset = _DURABLE.unpack(body)
            return SpoolPosition(segment, offset)
    return None


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


def checkpoint_frame(heads: dict[str, ChainHead]) -> bytes:
    """The frame that opens a segment: every chain head before it."""
    body = {"checkpoint": {"heads": {c: [h.seq, h.hash] for c, h in heads.items()}}}
    return encode_frame(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), CHECKPOINT_TIME)


def read_checkpoint(directory: Path, number: int) -> dict[str, ChainHead] | None:
    """The heads in segment ``number``'s opening checkpoint, or None if it has none."""
    try:
        with segment_path(directory, number).open("rb") as f:
            head = f.read(len(MAGIC) + _HEADER.size)
            if len(head) < len(MAGIC) + _HEADER.size or head[: len(MAGIC)] != MAGIC:
                return None
            length, _, when = _HEADER.unpack_from(head, len(MAGIC))
            if when != CHECKPOINT_TIME or length > _MAX_FRAME:
                return None
            data = head + f.read(length)
    except FileNotFoundError:
        return None
    frames, _, _ = iter_frames(data, number, max_frames=1)
    if not frames or not frames[0].is_checkpoint:
        return None
    doc = orjson.loads(frames[0].data)["checkpoint"]["heads"]
    return {chain: ChainHead(int(seq), str(digest)) for chain, (seq, digest) in doc.items()}


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
    _fsync_dir(path.parent)


@dataclass(slots=True)
class _Waiter:
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[None] | concurrent.futures.Future[None]


@dataclass(slots=True)
class _Batch:
    frames: list[bytes] = field(default_factory=list)
    waiters: list[_Waiter] = field(default_factory=list)
    heads: list[tuple[str, ChainHead]] = field(default_factory=list)
    nbytes: int = 0
    urgent: bool = False
    """A waiter awaits durability: commit now (else only lingering records)."""
    first_at: float = 0.0
    """monotonic() when the first record was queued (the linger starts there)."""
    state: bool = False
    """The carried state (``carry_state``) changed: write it with this commit."""


class SpoolWriter:
    """Owns the active segment and the writer thread (group commit).

    Degraded, not dead: when a write or fsync fails (a full disk, an I/O error), or the
    spool cannot even be recovered at start (a full volume), the writer refuses records
    (:class:`AuditUnavailableError`) and its thread retries every ``retry_seconds``: it
    cuts the segment back to its last durable byte (what failed was never confirmed to
    anyone, and the chain heads roll back with it, so no gap), and resumes once the volume
    has ``min_free_bytes`` free again. :meth:`health` says why records are refused."""

    def __init__(self, settings: SpoolSettings, metrics: AuditMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else AuditMetrics()
        directory = settings.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._writer_lock_cm = flocked(
            directory / "writer.lock", blocking=False, wait_seconds=settings.lock_wait_seconds
        )
        self._writer_lock_cm.__enter__()
        self.spool_id = ""
        self.chainer = Chainer()
        self._written: dict[str, ChainHead] = {}
        self._segment = 0
        self._fd = -1
        self._durable_fd = -1
        self._size = 0
        self._base_size = 0
        self._spooled = 0
        self._started = False
        self._failed: AuditUnavailableError | None = None
        try:
            self._start_up()
        except OSError as e:
            # A full (or failing) volume: start refusing, alive and visible, and let the
            # writer thread retry, instead of a crash loop on every restart.
            self._failed = AuditUnavailableError(f"audit spool cannot start: {e}"[:512])
            log.error(
                "audit spool %s: cannot start (%s); refusing records, retrying every %.1fs",
                directory,
                e,
                settings.retry_seconds,
            )
            self._close_fds()
        except BaseException:
            self._writer_lock_cm.__exit__(None, None, None)
            raise
        self._last_rescan = time.monotonic()
        self._in_flight = 0
        self._dropped_unlogged = 0
        self._last_drop_log = -1e9
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending = _Batch()
        self._state_flush: Callable[[], None] | None = None
        self._last_state_log = -1e9
        self._closing = False
        self.metrics.spool_bytes.set(self._spooled)
        self._thread = threading.Thread(target=self._run, name="haltgate-audit-spool", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- start, heal

    def _start_up(self) -> None:
        """Recover the spool and open the newest segment (at start, and when a start that
        failed is retried)."""
        directory = self.settings.directory
        heads = settle(directory, self.metrics)
        self.spool_id = spool_id(directory)
        self._durable_fd = os.open(directory / DURABLE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        self._written = dict(heads)
        segments = list_segments(directory)
        self._segment = segments[-1] if segments else 0
        if self._segment:
            self._open_segment(self._segment, create=False)
        else:
            self._roll()
        self._spooled = spool_bytes(directory)
        self.chainer = Chainer(heads)
        self._started = True

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

    def _heal(self) -> bool:
        """Try to leave the failed state; True when records are accepted again."""
        try:
            if not self._started:
                self._start_up()
            else:
                # Bytes past the last durable commit belong to the batch that failed: its
                # waiters were refused, so they go (a torn tail, never a hole).
                os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
                for number in list_segments(self.settings.directory):
                    if number > self._segment:  # a roll that failed half-way: no records
                        os.unlink(segment_path(self.settings.directory, number))
                os.pwrite(
                    self._durable_fd, _encode_durable(SpoolPosition(self._segment, self._size)), 0
                )
            if self.free_bytes() < self.settings.min_free_bytes:
                return False
        except OSError as e:
            log.debug("audit spool still failing: %s", e)
            return False
        with self._lock:
            self._failed = None
        log.warning("audit spool %s: writable again; accepting records", self.settings.directory)
        return True

    def health(self) -> str | None:
        """``None`` when records are accepted, else why not: ``audit_unavailable`` (a
        failed write, a volume that cannot be written), ``audit_spool_full`` (the size
        limit, with ``onSpoolFull: block``) or ``disk_full`` (under ``min_free_bytes``
        free: the next commit would fail)."""
        if self._failed is not None:
            return AuditUnavailableError.code
        if self.settings.on_full == "block":
            with self._lock:
                full = not self._capacity_ok(4096)
            if full:
                return SpoolFullError.code
        try:
            if self.free_bytes() < self.settings.min_free_bytes:
                return "disk_full"
        except OSError:
            return AuditUnavailableError.code
        return None

    # ---------------------------------------------------------------- segment files

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
                _fsync_dir(self.settings.directory)
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

    # ---------------------------------------------------------------- enqueue

    def _capacity_ok(self, nbytes: int) -> bool:
        limit = self.settings.max_bytes
        nbytes += self._pending.nbytes
        if self._spooled + nbytes <= limit:
            return True
        # The shipper removes segments behind our back: recount before saying full, at
        # most every 50 ms so a full spool does not turn every call into a directory scan.
        now = time.monotonic()
        if now - self._last_rescan >= 0.05:
            self._last_rescan = now
            self._spooled = spool_bytes(self.settings.directory) + self._in_flight
            self.metrics.spool_bytes.set(self._spooled)
        return self._spooled + nbytes <= limit

    def submit(self, record: AuditRecord, waiter: _Waiter, *, urgent: bool = True) -> bool:
        """Queue ``record`` for the next commit; ``False`` when dropped (spool full and
        ``continue``). The waiter completes when the record is durable. ``urgent=False``:
        the commit may wait up to ``linger_seconds`` for more records."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._closing:
                raise AuditUnavailableError("audit spool is closed")
            # A sealed record is ~1 KiB: checking with a generous estimate before sealing means
            # a refused record never consumes a sequence number.
            if not self._capacity_ok(4096):
                if self.settings.on_full == "block":
                    self.metrics.refusals.labels(code=SpoolFullError.code).inc()
                    raise SpoolFullError(
                        f"audit spool {self.settings.directory} is full "
                        f"({self._spooled} of {self.settings.max_bytes} bytes): is the shipper "
                        "running and PostgreSQL reachable?"
                    )
                self.metrics.records_dropped.labels(reason="spool_full").inc()
                self._dropped_unlogged += 1
                now = time.monotonic()
                if now - self._last_drop_log >= 5.0:  # loud, but not one line per call
                    log.error(
                        "audit spool full: %d records dropped (onSpoolFull=continue), "
                        "latest decision %s",
                        self._dropped_unlogged,
                        record.decision_id,
                    )
                    self._dropped_unlogged = 0
                    self._last_drop_log = now
                return False
            record = fit_record(record, self.settings.max_payload_bytes)
            try:
                line, chain, head = self.chainer.seal_line(record, max_bytes=MAX_FRAME)
            except (TypeError, ValueError) as e:
                # Not JSON-serialisable (the caller's bug) or, even clipped, larger than a
                # frame the reader accepts. The chain is untouched (sealing serialises and
                # measures before it advances the head).
                self.metrics.refusals.labels(code=InvalidRecordError.code).inc()
                raise InvalidRecordError(f"audit record cannot be written: {e}") from e
            frame = encode_frame(line, record.time)
            batch = self._pending
            batch.frames.append(frame)
            batch.waiters.append(waiter)
            batch.heads.append((chain, head))
            batch.nbytes += len(frame)
            if urgent:
                if not batch.urgent:
                    batch.urgent = True
                    self._wake.notify()
            elif not batch.first_at:
                # No wake-up: the writer looks every linger_seconds, or an urgent record
                # takes this one along first.
                batch.first_at = time.monotonic()
        return True

    def carry_state(self, flush: Callable[[], None]) -> Callable[[], bool]:
        """Carry a second file (the budget state) in the group commit; returns the function
        to call when it changed (it returns False once the writer no longer commits: closed
        or failed; the caller then writes the state itself). ``flush`` runs on the writer
        thread in every commit after a change (before the batch's waiters complete), so
        whatever changed before a record was queued is written before that record's waiter
        returns. An ``OSError`` from it fails the batch's awaited records with
        :class:`StatePersistError` (the records themselves are durable; the spool keeps
        working)."""
        self._state_flush = flush
        return self._state_changed

    def _state_changed(self) -> bool:
        with self._lock:
            if self._closing:
                return False
            batch = self._pending
            if not batch.state:
                batch.state = True
                if not batch.first_at:
                    # Written with the next record's commit, or after linger_seconds.
                    batch.first_at = time.monotonic()
        return True

    # ---------------------------------------------------------------- writer thread

    def _run(self) -> None:
        linger = self.settings.linger_seconds
        while True:
            if self._failed is not None:
                with self._lock:
                    if self._closing:
                        return
                    self._wake.wait(self.settings.retry_seconds)
                    if self._closing:
                        return
                self._heal()
                continue
            with self._lock:
                while not self._pending.urgent and not self._closing:
                    # Idle, or only lingering records: look again when the oldest one is
                    # due (lingering records queue without a wake-up; an urgent one wakes
                    # us at once and takes them along).
                    pending = self._pending
                    wait = linger
                    if pending.frames or pending.state:
                        wait = pending.first_at + linger - time.monotonic()
                        if wait <= 0:
                            break
                    self._wake.wait(wait)
                batch = self._pending
                self._pending = _Batch()
                self._in_flight = batch.nbytes
                self._spooled += batch.nbytes
                closing = self._closing
            if batch.frames or batch.state:
                self._commit(batch)
            if closing and not batch.frames:
                return  # (a state write that failed now is not retried after close)

    def _commit(self, batch: _Batch) -> None:
        error: AuditUnavailableError | None = None
        state_error: StatePersistError | None = None
        started = time.perf_counter()
        frames, waiters, nbytes = batch.frames, batch.waiters, batch.nbytes
        if batch.state and self._state_flush is not None:
            # Before the records' fdatasync: the state's write then costs no extra wait.
            try:
                self._state_flush()
            except OSError as e:
                state_error = StatePersistError(
                    f"budget state could not be saved: {e.strerror or e}"[:512]
                )
                now = time.monotonic()
                if now - self._last_state_log >= 5.0:  # retried every commit: not every line
                    self._last_state_log = now
                    log.error("audit spool: carried budget state: %s", e)
                self._state_changed()  # still due: the next commit tries again
        if not frames:
            return
        try:
            if self._size > self._base_size and self._size + nbytes > self.settings.segment_bytes:
                self._roll()
            data = b"".join(frames)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.settings.fsync:
                os.fdatasync(self._fd)
            self._size += len(data)
            self._written.update(batch.heads)
            os.pwrite(
                self._durable_fd, _encode_durable(SpoolPosition(self._segment, self._size)), 0
            )
        except OSError as e:
            # After a failed write or fsync the file's state is unknown (fsyncgate): refuse
            # records until _heal() has cut the segment back to its last durable byte. The
            # records sealed since then (this batch, and those queued behind it) are
            # refused too, and the chain heads go back to the last written record.
            error = AuditUnavailableError(f"audit spool write failed: {e}")
            with self._lock:
                self._failed = error
                queued, self._pending = self._pending, _Batch()
                self.chainer = Chainer(self._written)
                self._spooled = max(self._spooled - nbytes - queued.nbytes, 0)
            waiters = waiters + queued.waiters
            self.metrics.refusals.labels(code=AuditUnavailableError.code).inc()
            log.error("audit spool: %s; refusing records until it can write again", e)
        else:
            self.metrics.fsync_seconds.observe(time.perf_counter() - started)
            self.metrics.group_size.observe(len(frames))
            self.metrics.records_spooled.inc(len(frames))
            self.metrics.spool_bytes.set(self._spooled)
        with self._lock:
            self._in_flight = 0
        if error is None and state_error is not None:
            # Only awaited records (intents) wait on the state; queued outcomes are durable.
            _resolve([w for w in waiters if w.loop is None], None)
            _resolve([w for w in waiters if w.loop is not None], state_error)
            return
        _resolve(waiters, error)

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Commit what is queued, stop the thread, close the segment, release the lock."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self._close_fds()
        self._writer_lock_cm.__exit__(None, None, None)


def _resolve(waiters: list[_Waiter], error: AuditError | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for w in waiters:
        if w.loop is None:
            cf = w.future
            assert isinstance(cf, concurrent.futures.Future)
            if error is None:
                cf.set_result(None)
            else:
                cf.set_exception(error)
        else:
            af = w.future
            assert isinstance(af, asyncio.Future)
            by_loop.setdefault(w.loop, []).append(af)
    for loop, futures in by_loop.items():
        # One wake-up per loop per commit, not one per record.
        with contextlib.suppress(RuntimeError):  # loop already closed: nobody waits
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


class SpoolAuditSink:
    """The production :class:`AuditSink`: every record durable in the local spool.

    ``intent`` and ``outcome`` return once the record's group commit reached the disk.
    Errors: :class:`SpoolFullError` (spool full, policy ``block``) and
    :class:`AuditUnavailableError` (write or fsync failed, or closed): refuse the call.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        settings: SpoolSettings | None = None,
        metrics: AuditMetrics | None = None,
        **options: Any,
    ) -> None:
        if settings is None:
            if directory is None:
                raise ValueError("SpoolAuditSink needs a directory or settings")
            settings = SpoolSettings(directory=Path(directory), **options)
        self.settings = settings
        self._writer = SpoolWriter(settings, metrics)
        self.metrics = self._writer.metrics

    @property
    def chain_heads(self) -> dict[str, ChainHead]:
        """Last sealed record per chain (includes records being committed)."""
        return self._writer.chainer.heads()

    async def _append(self, record: AuditRecord) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._writer.submit(record, _Waiter(loop, fut)):
            await fut

    async def intent(self, record: AuditRecord) -> None:
        """Durably append the intent record (see class docstring for errors)."""
        await self._append(record)

    async def outcome(self, record: AuditRecord) -> None:
        """Durably append the outcome or connection record."""
        await self._append(record)

    def append_blocking(self, record: AuditRecord, timeout: float = 30.0) -> None:
        """Synchronous append for code without an event loop (CLI tools, benchmarks)."""
        cf: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._writer.submit(record, _Waiter(None, cf)):
            cf.result(timeout=timeout)

    def health(self) -> str | None:
        """``None`` when records are accepted, else the reason code (see
        :meth:`SpoolWriter.health`): the sidecar's ``/readyz`` reports it."""
        return self._writer.health()

    def carry_state(self, flush: Callable[[], None]) -> Callable[[], bool]:
        """See :meth:`SpoolWriter.carry_state` (the Governor's state in the group commit)."""
        return self._writer.carry_state(flush)

    def submit_nowait(self, record: AuditRecord) -> concurrent.futures.Future[None] | None:
        """Queue ``record`` without waiting (outcomes); the returned future completes when
        it is durable: with the next awaited record's commit, or after at most
        ``linger_seconds``."""
        cf: concurrent.futures.Future[None] = concurrent.futures.Future()
        return cf if self._writer.submit(record, _Waiter(None, cf), urgent=False) else None

    async def close(self) -> None:
        """Commit queued records and release the spool."""
        await asyncio.get_running_loop().run_in_executor(None, self._writer.close)

    def close_blocking(self) -> None:
        """``close`` without an event loop."""
        self._writer.close()
