"""Property tests of the lease arithmetic (pure) and of a member's local lease."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from haltgate.governance.pool.lease import (
    PPM,
    ZERO,
    Amounts,
    LocalLease,
    allotment,
    fraction_ppm,
    overshoot_bound,
)

_limits = st.integers(min_value=0, max_value=10**15)


@given(
    limit=_limits,
    used=_limits,
    leased=_limits,
    hold=st.integers(0, 10**6),
    need=st.integers(0, 10**6),
    ppm=st.integers(1, PPM),
)
def test_allotment_is_bounded_by_what_remains(
    limit: int, used: int, leased: int, hold: int, need: int, ppm: int
) -> None:
    remaining = limit - used - leased
    got = allotment(limit, used, leased, hold=hold, need=need, ppm=ppm)
    if remaining < hold or remaining < 0:
        assert got is None
        return
    assert got is not None
    assert hold <= got <= remaining  # never more than remains: no lease over-commits
    assert got >= min(remaining, need)  # the caller's need is met when it can be
    assert got * PPM >= remaining * ppm or got == remaining or got >= need  # the share


@given(
    st.lists(st.tuples(st.integers(1, 10**6), st.floats(0.01, 1.0)), min_size=1, max_size=40),
    _limits,
)
def test_successive_leases_never_exceed_the_limit(
    takes: list[tuple[int, float]], limit: int
) -> None:
    leased = 0
    for need, fraction in takes:
        got = allotment(limit, 0, leased, hold=0, need=need, ppm=fraction_ppm(fraction))
        if got is not None:
            leased += got
        assert leased <= limit


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "settle", "release"]),
            st.integers(0, 20),
            st.integers(0, 50),
            st.integers(0, 100),
        ),
        max_size=200,
    ),
    st.integers(0, 500),
)
@settings(max_examples=200)
def test_local_lease_never_spends_beyond_its_allotment(
    ops: list[tuple[str, int, int, int]], allot: int
) -> None:
    lease = LocalLease(1, Amounts(calls=allot), (True, False, False, False, False), deadline=10.0)
    for op, call, amount, actual_share in ops:
        cid = str(call)
        if op == "reserve":
            lease.try_reserve(cid, Amounts(calls=amount), now=0.0)
        elif op == "settle":
            need = lease.in_flight.get(cid)
            # a call never settles above its reservation (the engine's worst case)
            spent = need[0] * actual_share // 100 if need else 0
            lease.settle(cid, Amounts(calls=spent))
        else:
            lease.release(cid)
        assert lease.spent.calls + lease.reserved.calls <= allot
        assert lease.reserved.calls == sum(a[0] for a in lease.in_flight.values())


def test_expired_lease_refuses_and_the_bound_sums_outstanding_leases() -> None:
    lease = LocalLease(1, Amounts(calls=5), (True,) * 5, deadline=1.0)
    assert lease.try_reserve("a", Amounts(calls=1), now=0.5)
    assert not lease.try_reserve("b", Amounts(calls=1), now=1.0)
    bound = overshoot_bound([Amounts(calls=5), Amounts(calls=3, tokens=7), ZERO])
    assert bound == Amounts(calls=8, tokens=7)
