"""Character n-gram linear model: the fast, high-recall model stage of injection detection.

The text is folded (`normalize.fold`: NFKC, invisible characters, homoglyphs, lower case),
its character 2..5-grams hashed into ``2**bits`` buckets, and a linear model (int8 weights
with one scale, shipped in ``data/ngram_injection.npz``) scores overlapping windows of
``window`` characters (stride ``window // 2``; a short text is one window). A window's
features are its n-gram counts divided by the square root of their total, so its logit is
``bias + scale * sum(w[bucket]) / sqrt(n)``: one cumulative sum over the text gives every
window's score. The text's probability is its best window's, and the windows over the
channel's threshold are the suspicious spans that the transformer stage then reads.

Featurisation lives here only: training (``haltgate.testbed.ngram_training``) calls
`window_features` so the shipped weights see exactly the buckets they were fitted on.
NumPy is the only dependency (the ``guard-model`` extra, or any install with numpy).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haltgate.governance.guardrails import normalize
from haltgate.governance.guardrails.base import Channel

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DATA_DIR = Path(__file__).resolve().parent / "data"
WEIGHTS = DATA_DIR / "ngram_injection.npz"
MANIFEST = DATA_DIR / "ngram_injection.manifest.json"
CALIBRATION = DATA_DIR / "ngram_injection.calibration.json"

NGRAM_MIN = 2
NGRAM_MAX = 5
BITS = 18
WINDOW = 320
_MULT = 0x100000001B3  # FNV-64 prime: mixes one code point into the running hash
_FINAL = 0x9E3779B97F4A7C15  # golden-ratio multiplier: spreads the top bits
_MULT_INV = pow(_MULT, -1, 1 << 64)  # its inverse mod 2**64: substring hashes from a prefix sum
_UNIGRAM = 0x5BD1E9955BD1E995  # told into a word's hash: a word, not a character n-gram
_BIGRAM = 0xC2B2AE3D27D4EB4F  # ... a pair of neighbouring words


class NgramModelError(Exception):
    """The shipped n-gram model or its calibration is missing or does not match."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _codes(folded: str) -> npt.NDArray[np.uint64]:
    import numpy as np

    padded = f" {folded} "
    return np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def position_buckets(folded: str, bits: int = BITS) -> npt.NDArray[np.int64]:
    """Bucket of every n-gram, shape (NGRAM_MAX - NGRAM_MIN + 1, len(folded) + 2).

    Row k holds the (NGRAM_MIN + k)-grams starting at each position of the space-padded
    text; positions where the n-gram would run past the end hold ``2**bits`` (a bucket
    past the table, whose weight is zero).
    """
    import numpy as np

    codes = _codes(folded)
    n_pos = codes.shape[0]
    rows = NGRAM_MAX - NGRAM_MIN + 1
    out = np.full((rows, n_pos), 1 << bits, dtype=np.int64)
    h = codes.copy()
    shift = np.uint64(64 - bits)
    with np.errstate(over="ignore"):
        for n in range(2, NGRAM_MAX + 1):
            m = n_pos - n + 1
            if m <= 0:
                break
            h = h[:m] * np.uint64(_MULT) ^ codes[n - 1 : n - 1 + m]
            if n >= NGRAM_MIN:
                mixed = (h ^ np.uint64(n)) * np.uint64(_FINAL)
                out[n - NGRAM_MIN, :m] = (mixed >> shift).astype(np.int64)
    return out


SINGLE_WINDOW = WINDOW + WINDOW // 4
"""Folded texts up to this length are scored as one window."""


_WORD_TABLE_END = 0x3040
"""Code points from here on (CJK and beyond) are word characters."""


class _WordTables:
    """Constants of `word_buckets`, made once: which code points are word characters, and
    the powers of the hash multiplier and of its inverse (grown on demand)."""

    def __init__(self) -> None:
        import numpy as np

        c = np.arange(_WORD_TABLE_END + 1)
        self.word = (
            ((c >= 48) & (c <= 57))
            | ((c >= 97) & (c <= 122))
            | ((c >= 65) & (c <= 90))
            | ((c >= 0xC0) & ~((c >= 0x2000) & (c <= 0x2BFF)) & ~(c >= 0x3000))
        ).view(np.int8)
        self.word[_WORD_TABLE_END] = 1
        self.fwd, self.inv = self._powers(SINGLE_WINDOW + 2)
        u64 = np.uint64
        self.uni, self.big, self.mult, self.final = (
            u64(_UNIGRAM),
            u64(_BIGRAM),
            u64(_MULT),
            u64(_FINAL),
        )
        self.shift = {b: u64(64 - b) for b in range(8, 33)}

    @staticmethod
    def _powers(n: int) -> tuple[Any, Any]:
        import numpy as np

        with np.errstate(over="ignore"):
            fwd = np.full(n + 1, _MULT, dtype=np.uint64)
            fwd[0] = 1
            inv = np.full(n, _MULT_INV, dtype=np.uint64)
            return fwd.cumprod(), inv.cumprod()

    def powers(self, n: int) -> tuple[Any, Any]:
        """(M**0 .. M**n, M**-1 .. M**-n): at least that many."""
        if self.inv.shape[0] < n:
            self.fwd, self.inv = self._powers(max(n, 2 * self.inv.shape[0]))
        return self.fwd, self.inv


_TABLES: list[_WordTables] = []


def word_buckets(
    folded: str, bits: int = BITS
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(position, bucket) of every word unigram and bigram of the folded text: a word is a
    run of ASCII letters and digits or of other letters (code points from U+00C0 on, but for
    general and CJK punctuation); its position is that of its first character in the
    space-padded text of `position_buckets` (a bigram's: its first word's), so a window owns
    the words that start in it. Hashed into the same ``2**bits`` buckets as the character
    n-grams (one table), by a polynomial hash of the word's code points, vectorised through
    a prefix sum (no Python loop over words; a fixed handful of NumPy calls)."""
    import numpy as np

    if not _TABLES:
        _TABLES.append(_WordTables())
    tables = _TABLES[0]
    c = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32)
    n = c.shape[0]
    word = np.zeros(n + 2, dtype=np.int8)  # word marks with a non-word on either side
    tables.word.take(np.minimum(c, _WORD_TABLE_END), out=word[1:-1])
    # a word starts where the marks step up and ends where they step down: alternately
    edges = np.flatnonzero(word[1:] - word[:-1])
    if edges.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    starts, ends = edges[0::2], edges[1::2]
    fwd, inv = tables.powers(n)
    # Unsigned array arithmetic wraps modulo 2**64 silently (the hash wants it):
    # hash(s, e) = sum over j in [s, e) of c[j] * M**(e - 1 - j)
    #            = M**e * (S[e] - S[s]), S[k] = sum over j < k of c[j] * M**-(j + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(c * inv[:n], out=prefix[1:])
    at = prefix.take(edges)
    h = fwd.take(ends) * (at[1::2] - at[0::2])
    mixed = np.concatenate((h ^ tables.uni, (h[:-1] * tables.mult) ^ h[1:] ^ tables.big))
    mixed *= tables.final
    buckets = (mixed >> tables.shift[bits]).astype(np.int64)
    pos = np.concatenate((starts, starts[:-1])) + 1
    return pos, buckets


class _LeanHashing:
    """`position_buckets` at run time: the same buckets with constants made once and fewer
    NumPy calls and allocations, plus the validity mask of one-window texts."""

    def __init__(self, np: Any, bits: int) -> None:
        self.np = np
        self.mult = np.uint64(_MULT)
        self.final = np.uint64(_FINAL)
        self.shift = np.uint64(64 - bits)
        rows = NGRAM_MAX - NGRAM_MIN + 1
        self.rows = rows
        self.tail = "\0" * (NGRAM_MAX - 2)
        self.f64 = np.float64
        assert NGRAM_MIN == 2, "row 0 is the first hash step"
        self.n = np.arange(NGRAM_MIN, NGRAM_MAX + 1, dtype=np.uint64)[:, None]
        width = SINGLE_WINDOW + 1  # n-gram starts of the longest padded text
        # row k (the (NGRAM_MIN + k)-grams) is valid but for its last k + NGRAM_MIN - 2
        # columns; a text's m columns are the mask's last m
        last = width - 1 - np.arange(width)
        self.valid = last[None, :] >= np.arange(rows)[:, None] + (NGRAM_MIN - 2)
        self.valid.setflags(write=False)

    def count(self, m: int) -> int:
        """Valid n-grams among m start positions."""
        if m >= self.rows:
            return self.rows * m - self.rows * (self.rows - 1) // 2
        return sum(max(m - k, 0) for k in range(self.rows))

    def short(self, s: int, e: int, m: int) -> int:
        """N-grams missing from positions s .. e - 1 of m because they run past the end."""
        return sum(self.rows - (m - p) for p in range(max(s, m - self.rows + 1), e))

    def buckets(self, folded: str) -> Any:
        """Shape (rows, len(folded) + 1): the columns of `position_buckets` but its last,
        unmasked (read it through ``valid[:, -m:]``)."""
        np = self.np
        mul, xor, mult = np.multiply, np.bitwise_xor, self.mult
        # the padded text plus NGRAM_MAX - 2 NULs, so that every row is computed full length
        padded = f" {folded} {self.tail}".encode("utf-32-le")
        codes = np.frombuffer(padded, dtype=np.uint32).astype(np.uint64)
        m = codes.shape[0] - (NGRAM_MAX - 1)
        out = np.empty((self.rows, m), dtype=np.uint64)
        prev = codes[:m]
        for k, row in enumerate(out):  # positional out=: the cheapest ufunc call
            mul(prev, mult, row)
            xor(row, codes[k + 1 : k + 1 + m], row)
            prev = row
        xor(out, self.n, out)
        mul(out, self.final, out)
        np.right_shift(out, self.shift, out)
        return out


def windows(length: int, window: int = WINDOW) -> list[tuple[int, int]]:
    """Character spans scored in a folded text of `length` characters."""
    if length <= window + window // 4:
        return [(0, length)]
    stride = window // 2
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return [(s, s + window) for s in starts]


def window_features(
    folded: str, bits: int = BITS, words: float = 0.0
) -> Iterator[tuple[int, int, dict[int, float]]]:
    """(start, end, {bucket: value}) of every window: the training-time view of a text.
    `words` > 0 adds the window's word unigrams and bigrams (`word_buckets`), each counted
    `words` times the weight of a character n-gram."""
    import numpy as np

    buckets = position_buckets(folded, bits)
    wpos, wbuckets = word_buckets(folded, bits) if words > 0 else (None, None)
    for start, end in windows(len(folded)):
        # position p of the padded text starts at folded[p - 1]; a window [s, e) owns the
        # n-grams starting at padded positions s .. e (the leading pad belongs to window 0).
        part = buckets[:, start : end + 1].ravel()
        part = part[part < (1 << bits)]
        total = float(part.size)
        if wpos is not None and wbuckets is not None:
            mine = wbuckets[(wpos >= start) & (wpos <= end)]
            total += float(mine.size)
        if total == 0:
            continue
        ids, counts = np.unique(part, return_counts=True)
        norm = 1.0 / math.sqrt(total)
        out = {int(i): float(c) * norm for i, c in zip(ids, counts, strict=True)}
        if wpos is not None and words > 0:
            for i, c in zip(*np.unique(mine, return_counts=True), strict=True):
                out[int(i)] = out.get(int(i), 0.0) + float(c) * words * norm
        yield start, end, out


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    probability: float


@dataclass(frozen=True, slots=True)
class NgramScore:
    probability: float
    """The best window's probability."""
    spans: tuple[Span, ...]
    """Windows at or over the channel's threshold, in the original text's offsets."""


class NgramModel:
    """The shipped weights plus their per-channel calibration; load once, share freely."""

    def __init__(
        self,
        weights: npt.NDArray[np.int8],
        scale: float,
        bias: float,
        thresholds: dict[str, float],
        bits: int = BITS,
        words: float = 0.0,
    ) -> None:
        """`words`: the weight of a word unigram or bigram against a character n-gram (0: the
        model reads character n-grams only)."""
        import numpy as np

        if weights.shape != (1 << bits,):
            raise NgramModelError("weights", f"shape {weights.shape}, expected ({1 << bits},)")
        for ch in ("request", "document"):
            if not 0.0 < thresholds.get(ch, -1.0) < 1.0:
                raise NgramModelError("thresholds", f"{ch} threshold missing or outside (0, 1)")
        # one extra zero weight: the bucket of n-grams that run past the end
        self._w = np.append(weights.astype(np.float32) * np.float32(scale), np.float32(0.0))
        self._bias = float(bias)
        self._bits = bits
        self.thresholds = dict(thresholds)
        self._lean = _LeanHashing(np, bits)
        if not 0.0 <= words <= 16.0:
            raise NgramModelError("words", f"word feature weight {words} outside [0, 16]")
        self._words = float(words)

    @classmethod
    def load(
        cls,
        weights: Path = WEIGHTS,
        calibration: Path = CALIBRATION,
        manifest: Path | None = MANIFEST,
    ) -> NgramModel:
        """Load the committed model; with a manifest, its sha256 must match the weights."""
        import numpy as np

        try:
            raw = weights.read_bytes()
            cal = json.loads(calibration.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise NgramModelError("path", f"cannot read the n-gram model: {e}") from e
        if manifest is not None:
            try:
                want = json.loads(manifest.read_text(encoding="utf-8"))["weights"]["sha256"]
            except (OSError, ValueError, KeyError) as e:
                raise NgramModelError("manifest", f"cannot read {manifest}: {e}") from e
            have = hashlib.sha256(raw).hexdigest()
            if have != want:
                raise NgramModelError("sha256", f"{weights.name} is {have}, manifest says {want}")
        import io

        with np.load(io.BytesIO(raw)) as z:
            bits = int(z["bits"])
            if (int(z["ngram_min"]), int(z["ngram_max"]), int(z["window"])) != (
                NGRAM_MIN,
                NGRAM_MAX,
                WINDOW,
            ):
                raise NgramModelError("weights", "fitted with other n-gram or window settings")
            words = float(z["words"]) if "words" in z.files else 0.0
            return cls(
                z["weights"], float(z["scale"]), float(z["bias"]), cal["thresholds"], bits, words
            )

    def _one_window_logit(self, folded: str) -> float:
        """The logit of a text of at most SINGLE_WINDOW folded characters (one window): the
        sum of its n-grams' weights over the square root of their number, in a fixed
        handful of NumPy calls (per-call overhead is what a short text costs)."""
        lean = self._lean
        buckets = lean.buckets(folded)
        m = buckets.shape[1]
        total = float(self._w.take(buckets).sum(dtype=lean.f64, where=lean.valid[:, -m:]))
        n = lean.count(m)
        if self._words:
            _, wb = word_buckets(folded, self._bits)
            total += self._words * float(self._w.take(wb).sum(dtype=lean.f64))
            n += wb.shape[0]
        return self._bias + total / math.sqrt(max(n, 1))

    def window_logits(self, folded: str) -> tuple[list[tuple[int, int]], list[float]]:
        """Windows of the folded text and their logits."""
        if len(folded) <= SINGLE_WINDOW:
            return [(0, len(folded))], [self._one_window_logit(folded)]
        import numpy as np

        lean = self._lean
        buckets = lean.buckets(folded)
        m = buckets.shape[1]  # n-gram start positions: the padded text's but its last
        past = 1 << self._bits  # n-grams that run past the end weigh nothing
        for k in range(1, lean.rows):
            buckets[k, m - k :] = past
        per_pos = self._w.take(buckets).sum(axis=0, dtype=np.float64)
        cum = np.concatenate(([0.0], np.cumsum(per_pos)))
        spans = windows(len(folded))
        starts = [s for s, _ in spans]
        ends = [e + 1 for _, e in spans]
        # a window of padded positions s .. e holds 4 n-grams a position, fewer in the last
        # three positions of the text
        n = np.array(
            [lean.rows * (e - s) - lean.short(s, e, m) for s, e in zip(starts, ends, strict=True)],
            dtype=np.float64,
        )
        if self._words:  # words counted at their first character's position
            wpos, wb = word_buckets(folded, self._bits)
            wsum = np.bincount(wpos, weights=self._w.take(wb) * self._words, minlength=m + 1)
            wcum = np.concatenate(([0.0], np.cumsum(wsum)))
            ccum = np.concatenate(([0], np.cumsum(np.bincount(wpos, minlength=m + 1))))
            cum = cum + wcum[: m + 1]
            n = n + (ccum[ends] - ccum[starts])
        sums = cum[ends] - cum[starts]
        logits = self._bias + sums / np.sqrt(n)
        return spans, logits.tolist()

    def score(
        self, text: str, channel: Channel = "request", *, folded: str | None = None
    ) -> NgramScore:
        """Best window probability and the windows over `channel`'s threshold. `folded`:
        ``normalize.fold(text)`` when the caller already has it."""
        if not text:
            return NgramScore(0.0, ())
        if folded is None:
            folded = normalize.fold(text)
        limit = self.thresholds[channel]
        if len(folded) <= SINGLE_WINDOW:
            logit = self._one_window_logit(folded)
            p = _sigmoid(logit)
            if p < limit:  # the everyday short request
                return NgramScore(p, ())
            spans, logits = [(0, len(folded))], [logit]
        else:
            spans, logits = self.window_logits(folded)
        probs = [_sigmoid(x) for x in logits]
        best = max(probs) if probs else 0.0
        hot = [(s, e, p) for (s, e), p in zip(spans, probs, strict=True) if p >= limit]
        if not hot:
            return NgramScore(best, ())
        # Same length: windows are coarse, so offsets are taken as they are (the exact
        # per-character table is built only when folding changed the length).
        to_origin = _same if len(folded) == len(text) else normalize._folded_mapper(text, folded)
        out: list[Span] = []
        for s, e, p in hot:
            a, b = to_origin(s, e)
            if out and a <= out[-1].end:  # overlapping windows merge into one span
                last = out[-1]
                out[-1] = Span(last.start, max(last.end, b), max(last.probability, p))
            else:
                out.append(Span(a, b, p))
        return NgramScore(best, tuple(out))


def _same(i: int, j: int) -> tuple[int, int]:
    return i, j


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class UnavailableNgramModel(NgramModel):
    """Stands in when the model cannot load: every score raises, so failMode decides."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.thresholds = {"request": 0.5, "document": 0.5}

    def score(
        self, text: str, channel: Channel = "request", *, folded: str | None = None
    ) -> NgramScore:
        raise NgramModelError("fastModel", f"the n-gram model is unavailable: {self.reason}")


_SHARED: list[NgramModel] = []


def shared_model() -> NgramModel:
    """The committed model, loaded once per process (or a stand-in that raises on use)."""
    if not _SHARED:
        try:
            _SHARED.append(NgramModel.load())
        except (NgramModelError, ImportError) as e:
            _SHARED.append(UnavailableNgramModel(str(e)))
    return _SHARED[0]
