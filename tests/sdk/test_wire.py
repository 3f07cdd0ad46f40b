"""The SDK's copy of the wire format (sdk/haltgate/sdk/wire.py) equals the sidecar's own."""

from __future__ import annotations

from haltgate.governance import errors as governance_errors
from haltgate.governance.engine import codes
from haltgate.governance.policy_base import FailureType
from haltgate.sdk import wire
from haltgate.sdk.errors import DeniedError, SafetyError, error_from_body
from haltgate.sidecar import self_view


def test_failure_types() -> None:
    assert {t.value for t in wire.FailureType} == {t.value for t in FailureType}


def test_run_halt_codes_are_the_engine_codes() -> None:
    engine = {d.code for d in codes.DIMENSIONS} | {
        codes.REPEATED_TOOL_CALLS,
        codes.EXTERNAL_HALT,
        codes.STATE_UNREADABLE,
        codes.STATE_PERSIST_FAILED,
    }
    assert wire.RUN_HALT_CODES == engine
    # The engine's SAFETY refusals of one call are not halts of the run.
    for code in (codes.UNKNOWN_MODEL_PRICE, codes.DUPLICATE_CALL_ID, codes.INVALID_EVENT):
        assert code not in wire.RUN_HALT_CODES


def test_categories_are_the_sidecar_error_categories() -> None:
    categories = {
        cls.category
        for cls in vars(governance_errors).values()
        if isinstance(cls, type) and issubclass(cls, governance_errors.HaltgateError)
    }
    assert wire.CATEGORIES == categories


def test_self_path() -> None:
    assert wire.SELF_PATH == self_view.SELF_PATH


def test_safety_codes_decide_halt_or_denial() -> None:
    halt = error_from_body(
        {"error": {"type": "SAFETY", "code": "emocore_exploration_exceeded", "message": "m"}}
    )
    denial = error_from_body({"error": {"type": "SAFETY", "code": "tool_denied", "message": "m"}})
    assert type(halt) is SafetyError and halt.terminal
    assert type(denial) is DeniedError and not denial.terminal
