"""Lease arithmetic of a shared budget pool: pure integer functions, no I/O, no clock.

A pool has, per dimension (calls, tokens, input/output tokens, cost in picodollars), a
``limit``, what members reported as ``used`` and what is ``leased`` out right now. A member
sidecar takes a lease: an allotment it may spend locally without asking the database again.

    remaining = limit - used - leased
    allotment = min(remaining, max(need, ceil(fraction * remaining)))   if remaining >= hold

``hold`` is what the member must keep (its calls in flight when it renews); ``need`` is what
it would like at least (those plus the next call). A lease is refused when ``remaining <
hold``; it may come back smaller than ``need``, and then the next call does not fit and is
refused locally (the pool is nearly spent). The same formula is written in SQL in
``store.py``; ``tests/pool`` checks they agree.

**The overshoot bound.** Members spend only within their allotment, and an allotment is
counted as ``leased`` until it is settled, so while every lease is settled the pool's spend
never passes ``limit``. A lease that expires (its holder crashed, was paused, or lost the
database) returns its whole allotment to the pool although the holder may have spent part of
it without reporting. Hence, at any time::

    actual spend <= limit + sum(allotments of leases that expired unsettled)

and each such allotment was outstanding when it expired, so the over-spend is at most the
sum of the leases outstanding at the moments members failed (``overshoot_bound``). Members
stop spending a lease locally before the database would expire it (``local_deadline``), so a
member that is merely slow or cut off from the database does not add to the over-spend
unless its clock jumps or the process is frozen past the margin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

__all__ = [
    "DIMENSIONS",
    "ZERO",
    "Amounts",
    "LocalLease",
    "allotment",
    "fraction_ppm",
    "grant",
    "local_deadline",
    "overshoot_bound",
]

DIMENSIONS: tuple[str, ...] = ("calls", "tokens", "input_tokens", "output_tokens", "cost_pico")
"""Pool dimensions, in column order. ``cost_pico`` is US dollars times 10**12."""

PPM = 1_000_000
"""The lease fraction is kept in parts per million: exact integer arithmetic in SQL too."""

LOCAL_MARGIN = 0.8
"""A member stops spending a lease after this share of ``lease_seconds`` measured from
before its request was sent: well before the database's expiry (measured from later)."""


def fraction_ppm(fraction: float) -> int:
    """The lease fraction in parts per million, at least 1."""
    return max(1, min(PPM, round(fraction * PPM)))


def allotment(
    limit: int | None, used: int, leased: int, *, hold: int, need: int, ppm: int
) -> int | None:
    """What one dimension grants a member, or ``None`` when it cannot cover ``hold``.

    ``limit=None`` (dimension not limited) grants 0: nothing to account for. Integers
    throughout; the fraction is ``ppm / 10**6`` rounded up so the last units can be leased.
    """
    if limit is None:
        return 0
    remaining = limit - used - leased
    if remaining < hold or remaining < 0:
        return None
    share = -(-remaining * ppm // PPM)  # ceil without floats
    return min(remaining, max(need, hold, share))


@dataclass(frozen=True, slots=True)
class Amounts:
    """One quantity per pool dimension (a need, a grant, a spend)."""

    calls: int = 0
    tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_pico: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[int, ...]:
        """The amounts in ``DIMENSIONS`` order."""
        return (self.calls, self.tokens, self.input_tokens, self.output_tokens, self.cost_pico)

    def as_dict(self) -> dict[str, int]:
        return dict(zip(DIMENSIONS, self.values(), strict=True))

    @classmethod
    def from_mapping(cls, data: Mapping[str, int | None], prefix: str = "") -> Amounts:
        """From ``{prefix+dimension: value}`` (missing or NULL values are 0)."""
        return cls(*(int(data.get(prefix + d) or 0) for d in DIMENSIONS))

    def clamp_to(self, other: Amounts) -> Amounts:
        """Per dimension, at most ``other`` (and never below 0)."""
        return Amounts(
            *(max(0, min(a, b)) for a, b in zip(self.values(), other.values(), strict=True))
        )


ZERO = Amounts()
assert len(fields(Amounts)) == len(DIMENSIONS)


def grant(
    limits: Mapping[str, int | None],
    used: Amounts,
    leased: Amounts,
    *,
    hold: Amounts,
    need: Amounts,
    ppm: int,
) -> Amounts | None:
    """:func:`allotment` over every dimension; ``None`` if any dimension refuses."""
    out = []
    for d, u, lz, h, n in zip(
        DIMENSIONS, used.values(), leased.values(), hold.values(), need.values(), strict=True
    ):
        a = allotment(limits.get(d), u, lz, hold=h, need=n, ppm=ppm)
        if a is None:
            return None
        out.append(a)
    return Amounts(*out)


def overshoot_bound(outstanding: Iterable[Amounts]) -> Amounts:
    """The most the pool can be over-spent if every outstanding lease expired unsettled."""
    total = ZERO
    for a in outstanding:
        total = total + a
    return total


def local_deadline(sent_at: float, lease_seconds: float) -> float:
    """Monotonic time after which a member must not spend a lease requested at ``sent_at``."""
    return sent_at + lease_seconds * LOCAL_MARGIN


class LocalLease:
    """A member's lease as it spends it: allotment, spent, and reserved by calls in flight.

    Invariant (``tests/pool/test_lease.py``): ``spent + reserved <= allotment`` in every
    limited dimension as long as no call settles above what it reserved. The hot path runs
    on plain lists of ints (a few hundred nanoseconds), not on :class:`Amounts` objects.
    """

    __slots__ = (
        "_alloc",
        "_limited",
        "_reserved",
        "_spent",
        "allotment",
        "deadline",
        "in_flight",
        "lease_id",
        "limited",
    )

    def __init__(
        self, lease_id: int | None, allotment: Amounts, limited: tuple[bool, ...], deadline: float
    ) -> None:
        self.lease_id = lease_id
        self.allotment = allotment
        self.limited = limited
        self.deadline = deadline
        """Monotonic time after which nothing more may be reserved from it."""
        self.in_flight: dict[str, tuple[int, ...]] = {}
        self._alloc = allotment.values()
        self._limited = tuple(i for i, lim in enumerate(limited) if lim)
        self._spent = [0] * len(DIMENSIONS)
        self._reserved = [0] * len(DIMENSIONS)

    @property
    def spent(self) -> Amounts:
        """Settled spend not yet reported to the database."""
        return Amounts(*self._spent)

    @property
    def reserved(self) -> Amounts:
        """Reserved by calls in flight."""
        return Amounts(*self._reserved)

    def carry_spent(self, amounts: Amounts) -> None:
        """Add spend settled elsewhere (the previous lease, during a renewal)."""
        for i, v in enumerate(amounts.values()):
            self._spent[i] += v

    def room(self) -> Amounts:
        return Amounts(
            *(a - s - r for a, s, r in zip(self._alloc, self._spent, self._reserved, strict=True))
        )

    def try_reserve(self, call_id: str, need: Amounts, now: float) -> bool:
        """Reserve ``need`` for a call if it fits and the lease is still valid (a call id
        already in flight is refused: its reservation would be lost)."""
        if now >= self.deadline or call_id in self.in_flight:
            return False
        v = need.values()
        alloc, spent, reserved = self._alloc, self._spent, self._reserved
        for i in self._limited:
            if spent[i] + reserved[i] + v[i] > alloc[i]:
                return False
        for i in range(len(v)):
            reserved[i] += v[i]
        self.in_flight[call_id] = v
        return True

    def adopt(self, call_id: str, need: Amounts | tuple[int, ...]) -> None:
        """Carry a call in flight over from the previous lease (renewal)."""
        v = need.values() if isinstance(need, Amounts) else need
        for i in range(len(v)):
            self._reserved[i] += v[i]
        self.in_flight[call_id] = v

    def settle(self, call_id: str, actual: Amounts) -> bool:
        """Replace a call's reservation by its actual spend. False if the call is unknown."""
        v = self.in_flight.pop(call_id, None)
        if v is None:
            return False
        a = actual.values()
        reserved, spent = self._reserved, self._spent
        for i in range(len(v)):
            reserved[i] -= v[i]
            spent[i] += a[i]
        return True

    def release(self, call_id: str) -> bool:
        """Give a call's reservation back (it never reached upstream)."""
        v = self.in_flight.pop(call_id, None)
        if v is None:
            return False
        for i in range(len(v)):
            self._reserved[i] -= v[i]
        return True

    def used_share(self) -> float:
        """The largest share of the allotment already spent or reserved (0..1+)."""
        worst = 0.0
        alloc, spent, reserved = self._alloc, self._spent, self._reserved
        for i in self._limited:
            a = alloc[i]
            share = 1.0 if a <= 0 else (spent[i] + reserved[i]) / a
            if share > worst:
                worst = share
        return worst
