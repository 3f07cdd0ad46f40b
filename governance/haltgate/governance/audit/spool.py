"""The audit spool's on-disk format: segments, frames, checkpoints and the small state files.

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
holds record frames. Two frame formats, told apart by each frame's length word, so a reader
starting anywhere in a segment needs no other state:

- format 1: ``<u32 length><u32 crc32><f64 time>`` and the record's canonical JSON (every
  frame written before format 2; checkpoint frames still are);
- format 2 (``length`` has bit 31 set, ``ROW_FLAG``): ``<u32 length|ROW_FLAG><u32
  crc32><f64 time><u32 json_at>``, then ``length`` bytes: the record's row of PostgreSQL's
  binary COPY format (audit/copy_rows.py), whose last column, ``record``, is the canonical
  JSON starting at ``json_at``. The writer encodes the row when it seals the record; the
  shipper sends it as it is.

The CRC covers everything after itself (time, ``json_at``, body), and the time lets the
shipper route rows to monthly partitions without parsing JSON. The magic names the newest
frame format a segment may hold (``HGAUD\0\x01\n``: format 1 only, ``\x02``: both); a
reader that knows only format 1 refuses a format-2 segment as a bad magic rather than
misreading it.

What the writer (audit/spool_writer.py), recovery (audit/spool_recovery.py) and the shipper
(audit/shipper.py) share: reading and encoding frames, the durable mark, locks, atomic files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from haltgate.governance.audit.copy_rows import row_rest
from haltgate.governance.audit.record import ChainHead
from haltgate.governance.audit.sink import AuditUnavailableError

__all__ = [
    "MAGIC",
    "MAGIC_V1",
    "MAX_FRAME",
    "ROW_FLAG",
    "Frame",
    "SpoolPosition",
    "iter_frames",
    "list_segments",
    "read_heads",
    "write_json_atomic",
]

MAGIC_V1 = b"HGAUD\x00\x01\n"
"""First 8 bytes of a segment of format-1 frames only (written before format 2)."""
MAGIC = b"HGAUD\x00\x02\n"
"""First 8 bytes of every segment the writer creates now (format-1 and format-2 frames)."""
MAGICS = (MAGIC_V1, MAGIC)
_HEADER = struct.Struct("<IId")
_JSON_AT = struct.Struct("<I")
ROW_FLAG = 0x8000_0000
"""Set in a frame's length word: a format-2 frame (the record's COPY row, then its JSON)."""
_ROW_HEADER = 4  # json_at, after the format-1 header
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
    """The record's canonical JSON line."""
    row: bytes | None = None
    """Format 2: the record's whole binary COPY row (ending with ``data``); None in
    format 1 (the shipper encodes the row from ``data``)."""

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
        if data[: len(MAGIC)] not in MAGICS:
            return frames, 0, "bad segment magic"
        pos = len(MAGIC)
    end = len(data)
    header = _HEADER.size
    append = frames.append
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    while pos < end:
        if max_frames is not None and len(frames) >= max_frames:
            break
        if end - pos < header:
            return frames, base + pos, "short frame header"
        length, crc, when = unpack(data, pos)
        if length & ROW_FLAG:
            length ^= ROW_FLAG
            body_start = pos + header + _ROW_HEADER
            if body_start > end:
                return frames, base + pos, "short frame header"
            (json_at,) = _JSON_AT.unpack_from(data, pos + header)
        else:
            body_start = pos + header
            json_at = -1
        if length == 0 or length > _MAX_FRAME:
            return frames, base + pos, f"bad frame length {length}"
        if body_start + length > end:
            return frames, base + pos, "short frame body"
        body = data[body_start : body_start + length]
        if crc32(body, crc32(data[pos + 8 : body_start])) != crc:
            return frames, base + pos, "frame checksum mismatch"
        if json_at < 0:
            append(Frame(segment, base + pos, base + body_start + length, when, body))
        elif 4 <= json_at < length and body[json_at - 4 : json_at] == (length - json_at).to_bytes(
            4, "big"
        ):
            append(
                Frame(segment, base + pos, base + body_start + length, when, body[json_at:], body)
            )
        else:  # the row's record column is not the JSON after it: a writer's bug
            return frames, base + pos, "frame row does not end with its record"
        pos = body_start + length
    return frames, base + pos, None


def encode_frame(line: bytes, when: float) -> bytes:
    """Frame (format 1) one canonical JSON line of a record made at ``when`` (epoch
    seconds)."""
    stamp = struct.pack("<d", when)
    return struct.pack("<II", len(line), zlib.crc32(line, zlib.crc32(stamp))) + stamp + line


_ROW_STAMP = struct.Struct("<dI").pack
_LENGTH_CRC = struct.Struct("<II").pack


def encode_row_frame(head: bytes, digest: str, line: bytes, when: float) -> bytes:
    """Frame (format 2) a record's binary COPY row: ``head`` (its columns before
    ``hash``, ``copy_rows.row_head``), its hash ``digest`` and canonical JSON ``line``."""
    rest = row_rest(digest, len(line))
    at = len(head) + len(rest)
    stamp = _ROW_STAMP(when, at)
    crc = zlib.crc32(line, zlib.crc32(rest, zlib.crc32(head, zlib.crc32(stamp))))
    return b"".join((_LENGTH_CRC((at + len(line)) | ROW_FLAG, crc), stamp, head, rest, line))


def segment_format(head: bytes) -> int | None:
    """The frame format a segment's first bytes announce (1 or 2), None if no magic."""
    magic = head[: len(MAGIC)]
    return 2 if magic == MAGIC else 1 if magic == MAGIC_V1 else None


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so a file created, renamed or removed in it stays so."""
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
    fsync_dir(path.parent)


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
    fsync_dir(directory)
    return value


def write_durable(directory: Path, position: SpoolPosition) -> None:
    """Publish how far the spool is durable. Written after the fdatasync that made it so,
    never fsync'd itself: after a power loss it can only be behind, never ahead."""
    fd = os.open(directory / DURABLE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, encode_durable(position), 0)
    finally:
        os.close(fd)


def encode_durable(position: SpoolPosition) -> bytes:
    """The ``durable`` file's content: the position and its CRC."""
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


def checkpoint_frame(heads: dict[str, ChainHead]) -> bytes:
    """The frame that opens a segment: every chain head before it."""
    body = {"checkpoint": {"heads": {c: [h.seq, h.hash] for c, h in heads.items()}}}
    return encode_frame(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), CHECKPOINT_TIME)


def read_checkpoint(directory: Path, number: int) -> dict[str, ChainHead] | None:
    """The heads in segment ``number``'s opening checkpoint, or None if it has none."""
    try:
        with segment_path(directory, number).open("rb") as f:
            head = f.read(len(MAGIC) + _HEADER.size)
            if len(head) < len(MAGIC) + _HEADER.size or head[: len(MAGIC)] not in MAGICS:
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
