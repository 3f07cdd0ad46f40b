"""The engine's configuration: a policy's budgets compiled into integer meter columns.

:class:`EngineConfig` holds everything the engine reads on every step (limits, warnAt
thresholds, the counter dimensions) and builds the state of a fresh run; it has no state
of its own. The other engine layers (``periods``, ``reporting``, ``admission``,
``settlement``) add behaviour on top of it, and ``core.Engine`` assembles them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from haltgate.governance.engine import codes
from haltgate.governance.engine.codes import Dimension
from haltgate.governance.engine.pricing import PriceTable
from haltgate.governance.engine.state import (
    A_CALLS,
    A_COST,
    A_INPUT,
    A_OUTPUT,
    A_RISK,
    A_TOKENS,
    EMPTY_RESERVATIONS,
    Amounts,
    EngineState,
)
from haltgate.governance.engine.units import (
    MICRO_PER_RISK,
    PICO_PER_USD,
    risk_to_micro,
    usd_to_pico,
)
from haltgate.governance.policy import GovernancePolicySpec
from haltgate.governance.policy_base import Period, Window

PERIOD_SECONDS = {Period.RUN: 0, Period.HOUR: 3600, Period.DAY: 86400}
ROLLING_BUCKETS = 60
"""A rolling window is tracked in this many buckets (1 min for an hour, 24 min for a day).

Usage leaves a rolling window when its whole bucket is older than the period: between
``period`` and ``period + period/60`` seconds after it was settled, never earlier (usage is
counted too long rather than too short: fail closed)."""
UNTRACKED_SET_CAP = 4096
"""Without a distinct-tools limit, the set of seen tools (for stagnation) stops growing here."""
RECENT_MIN, RECENT_MAX = 16, 64
"""Stagnation remembers the last max(16, 2 x window) fingerprints (at most 64)."""

MAX_MESSAGE_CHARS = 512
"""Halt messages from outside are cut to this size (they end up in every refusal)."""
MAX_CODE_CHARS = 64

ALLOWED = "allowed"
INF = math.inf
new_record = tuple.__new__
"""Builds a named tuple from a tuple without the generated ``__new__`` (a Python function
taking one argument per field): ~2x cheaper, and states/decisions are built every step."""


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """A metered dimension as configured by the policy, in integer units."""

    dim: Dimension
    source: int
    """Index into an amount vector (``state.A_*``)."""
    limit: int
    period: int
    """Seconds; 0 for the whole run."""
    rolling: bool
    bucket: int
    """Rolling bucket width in seconds."""
    warn: float
    """used + reserved at or above this reports a warning."""
    scale: int
    """Integer units per reported unit (10**12 for USD, 10**6 for risk, else 1)."""
    period_name: str
    key: str
    """The meter's name in the state: ``<dimension>/<mode>`` (e.g. ``calls/hour-rolling``).
    A policy that changes a meter's period or window changes its key, so a state made
    under the old policy is adapted by ``restore`` (the bookkeeping differs)."""


def fmt_amount(spec: MeterSpec, amount: int) -> str:
    if spec.scale == PICO_PER_USD:
        return f"${amount / PICO_PER_USD:.6f}"
    if spec.scale == 1:
        return str(amount)
    return f"{amount / spec.scale:g}"


def _picker(sources: tuple[int, ...]) -> Callable[[Amounts], tuple[int, ...]]:
    """A function picking the meters' amounts out of an amount vector, as a tuple."""
    if not sources:
        return lambda amounts: ()
    if len(sources) == 1:
        only = sources[0]
        return lambda amounts: (amounts[only],)
    return itemgetter(*sources)


class EngineConfig:
    """A policy's budgets as the engine checks them (configuration only, no state)."""

    __slots__ = (
        "_counter_warns",
        "_cw",
        "_dim_names",
        "_fail_warn",
        "_host_warn",
        "_ident_warn",
        "_limits",
        "_max_failures",
        "_max_hosts",
        "_max_identical",
        "_max_tools",
        "_meters",
        "_names",
        "_pick",
        "_prices",
        "_recent",
        "_report_meta",
        "_risk_index",
        "_rolling",
        "_run_limits",
        "_stag_warn",
        "_stagnation",
        "_tool_warn",
        "_track_tools",
        "_wall",
        "_wall_warn",
        "_warns",
        "_zeros",
        "spec",
    )

    def __init__(self, spec: GovernancePolicySpec, prices: PriceTable) -> None:
        self.spec = spec
        self._prices = prices
        b = spec.budgets
        warn_at = b.warn_at
        meters: list[MeterSpec] = []

        def add(
            dim: Dimension,
            source: int,
            limit: int,
            period: Period,
            window: Window,
            scale: int = 1,
        ) -> None:
            seconds = PERIOD_SECONDS[period]
            rolling = bool(seconds) and window is Window.ROLLING
            meters.append(
                MeterSpec(
                    dim=dim,
                    source=source,
                    limit=limit,
                    period=seconds,
                    rolling=rolling,
                    bucket=seconds // ROLLING_BUCKETS if rolling else 0,
                    warn=warn_at * limit,
                    scale=scale,
                    period_name=f"{window.value} {period.value}" if seconds else "run",
                    key=f"{dim.name}/{period.value}-{window.value}"
                    if seconds
                    else f"{dim.name}/run",
                )
            )

        if b.calls is not None:
            add(codes.CALLS, A_CALLS, b.calls.limit, b.calls.period, b.calls.window)
        if b.tokens is not None:
            t = b.tokens
            if t.limit is not None:
                add(codes.TOKENS, A_TOKENS, t.limit, t.period, t.window)
            if t.input is not None:
                add(codes.INPUT_TOKENS, A_INPUT, t.input, t.period, t.window)
            if t.output is not None:
                add(codes.OUTPUT_TOKENS, A_OUTPUT, t.output, t.period, t.window)
        if b.cost_usd is not None:
            c = b.cost_usd
            add(codes.COST_USD, A_COST, usd_to_pico(c.limit), c.period, c.window, PICO_PER_USD)
        if b.risk_score is not None:
            add(
                codes.RISK_SCORE,
                A_RISK,
                risk_to_micro(b.risk_score.limit),
                Period.RUN,
                Window.CALENDAR,
                MICRO_PER_RISK,
            )
        self._meters = tuple(meters)
        self._rolling = tuple(i for i, m in enumerate(meters) if m.rolling)
        # Column vectors for the C-level map() arithmetic of the hot paths.
        self._pick = _picker(tuple(m.source for m in meters))
        self._limits = tuple(m.limit for m in meters)
        self._run_limits = tuple(INF if m.period else m.limit for m in meters)
        self._warns = tuple(m.warn for m in meters)
        self._names = tuple(m.key for m in meters)
        self._dim_names = tuple(m.dim.name for m in meters)
        self._report_meta = tuple((m.dim.name, m.scale, m.limit / m.scale) for m in meters)
        self._zeros = (0,) * len(meters)
        self._risk_index = (
            self._dim_names.index("risk_score") if "risk_score" in self._dim_names else -1
        )

        self._wall = None if b.wall_time is None else b.wall_time.limit_seconds
        self._wall_warn = None if self._wall is None else warn_at * self._wall
        self._max_failures = (
            None if b.consecutive_failures is None else b.consecutive_failures.limit
        )
        self._fail_warn = None if self._max_failures is None else warn_at * self._max_failures
        self._max_identical = None if b.identical_retries is None else b.identical_retries.limit
        self._ident_warn = None if self._max_identical is None else warn_at * self._max_identical
        self._max_tools = None if b.distinct_tools is None else b.distinct_tools.limit
        self._tool_warn = None if self._max_tools is None else warn_at * self._max_tools
        self._max_hosts = None if b.distinct_hosts is None else b.distinct_hosts.limit
        self._host_warn = None if self._max_hosts is None else warn_at * self._max_hosts
        self._stagnation = None if b.stagnation is None else b.stagnation.window
        self._stag_warn = None if self._stagnation is None else warn_at * self._stagnation
        self._cw = tuple(
            INF if w is None else w
            for w in (
                self._fail_warn,
                self._ident_warn,
                self._stag_warn,
                self._tool_warn,
                self._host_warn,
                self._wall_warn,
            )
        )
        self._counter_warns = any(
            w is not None
            for w in (
                self._wall_warn,
                self._fail_warn,
                self._ident_warn,
                self._tool_warn,
                self._host_warn,
                self._stag_warn,
            )
        )
        self._recent = (
            0
            if self._stagnation is None
            else min(RECENT_MAX, max(RECENT_MIN, 2 * self._stagnation))
        )
        self._track_tools = self._max_tools is not None or self._stagnation is not None

    @property
    def prices(self) -> PriceTable:
        """The price table the engine charges with."""
        return self._prices

    @property
    def meter_specs(self) -> tuple[MeterSpec, ...]:
        """The metered dimensions of the policy, in check order."""
        return self._meters

    @property
    def meter_keys(self) -> tuple[str, ...]:
        """The keys of :attr:`meter_specs`, in the same order (a state's ``meter_names``
        under this policy: the very tuple a fresh state carries)."""
        return self._names

    def initial_state(self) -> EngineState:
        """The state of a fresh run: nothing spent, nothing in flight, not halted."""
        n = len(self._meters)
        calendar = any(m.period and not m.rolling for m in self._meters)
        return EngineState(
            run=0,
            halt=None,
            run_started=None,
            clock=0.0,
            # Calendar meters start with period key 0: the first step must roll them.
            roll_at=0.0 if calendar else INF,
            meter_names=self._names,
            used=self._zeros,
            reserved=self._zeros,
            keys=self._zeros,
            buckets=((),) * n,
            reservations=EMPTY_RESERVATIONS,
            consecutive_failures=0,
            last_fingerprint=None,
            identical=0,
            no_progress=0,
            recent_calls=(),
            recent_results=(),
            recent_errors=(),
            tools=frozenset(),
            hosts=frozenset(),
        )
