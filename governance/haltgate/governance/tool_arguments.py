"""Argument constraints of tool rules: the JSON-path subset they read, JSON-typed equality
and membership, and each constraint compiled into one test over a tool call's arguments.

A key a constraint reads that is absent but present in another case refuses the call
(``ambiguous_json``): a tool decoding case-insensitively would read a different value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from haltgate.governance.errors import BadRequestError
from haltgate.governance.policy_rules import ArgumentConstraint
from haltgate.governance.strict_json import CODE_AMBIGUOUS_JSON

MISSING: Final = object()
"""What `lookup_json_path` returns for a path the document does not have."""


_PATH_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[([0-9]+)\]")


def compile_json_path(path: str) -> tuple[str | int, ...]:
    """Compile the JSON-path subset ``$``, ``.key``, ``[index]`` into a tuple of steps.

    Raises :class:`ValueError` for anything else (the policy schema already rejects it).
    """
    if not path.startswith("$"):
        raise ValueError(f"JSON path must start with '$': {path!r}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _PATH_STEP.match(path, pos)
        if m is None:
            raise ValueError(f"unsupported JSON path syntax at offset {pos}: {path!r}")
        key, index = m.group(1), m.group(2)
        steps.append(key if key is not None else int(index))
        pos = m.end()
    return tuple(steps)


def lookup_json_path(document: Any, steps: Sequence[str | int]) -> Any:
    """Follow compiled ``steps`` into ``document``; returns `MISSING` when absent.

    A key step only enters an object, an index step only a list: ``$.0`` never indexes a list
    and ``$[0]`` never reads a key ``"0"``.
    """
    value = document
    for step in steps:
        if isinstance(step, str):
            if not isinstance(value, dict):
                return MISSING
            if step not in value:
                _refuse_case_variant(value, step)
                return MISSING
            value = value[step]
        else:
            if not isinstance(value, list) or step >= len(value):
                return MISSING
            value = value[step]
    return value


def _refuse_case_variant(obj: dict[str, Any], key: str) -> None:
    """A key a constraint reads is absent, but spelled in another case: a tool that decodes
    its arguments case-insensitively (Go's encoding/json) would read it as ``key``, so the
    arguments have two readings. Raises ``ambiguous_json``."""
    folded = key.casefold()
    for other in obj:
        if isinstance(other, str) and other.casefold() == folded:
            raise BadRequestError(
                f"argument {other!r} differs from {key!r}, which the policy reads, only in "
                "case: case-insensitive tools would read it as that key",
                code=CODE_AMBIGUOUS_JSON,
            )


def json_equal(a: Any, b: Any) -> bool:
    """Equality with JSON types: ``true`` is not ``1``, ``1`` equals ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a is None and b is None


Check = Callable[[Any], bool]


def _compile_constraint(c: ArgumentConstraint) -> tuple[tuple[str | int, ...], Check, str]:
    steps = compile_json_path(c.path)
    check: Check
    if c.regex is not None:
        rx = re.compile(c.regex)

        def check(v: Any) -> bool:
            return isinstance(v, str) and rx.search(v) is not None

        what = f"{c.path} matches /{c.regex}/"
    elif c.max_length is not None:
        limit = c.max_length

        def check(v: Any) -> bool:
            return isinstance(v, str | list) and len(v) <= limit

        what = f"{c.path} has length <= {limit}"
    elif c.in_ is not None:
        check = _one_of(c.in_)
        what = f"{c.path} in {list(c.in_)!r}"
    else:
        # `equals` (validation requires exactly one of the four; `equals: null` is allowed
        # by the schema only through this branch and then means "is null").
        check = _one_of([c.equals])
        what = f"{c.path} equals {c.equals!r}"
    return steps, check, what


def _one_of(options: Sequence[Any]) -> Check:
    """A JSON-typed membership test, with set lookups for scalar options (the common case)."""
    strings = frozenset(o for o in options if isinstance(o, str))
    numbers = frozenset(
        o for o in options if isinstance(o, int | float) and not isinstance(o, bool)
    )
    bools = frozenset(o for o in options if isinstance(o, bool))
    null = any(o is None for o in options)
    composite = tuple(o for o in options if isinstance(o, list | dict))

    def check(v: Any) -> bool:
        t = type(v)
        if t is str:
            return v in strings
        if t is bool:
            return v in bools
        if t is int or t is float:
            return v in numbers
        if v is None:
            return null
        return any(json_equal(v, o) for o in composite)

    return check


@dataclass(frozen=True, slots=True)
class ArgumentCheck:
    holds: Check
    """Whether the constraint holds for a tool's arguments (path lookup and test fused)."""
    description: str
    steps: tuple[str | int, ...] = ()
    """The compiled JSON path the constraint reads."""


def _fuse(steps: tuple[str | int, ...], check: Check) -> Check:
    if len(steps) == 1 and isinstance(steps[0], str):
        # `$.key`, by far the most common path: one dict lookup, no loop.
        key = steps[0]

        def holds(arguments: Any) -> bool:
            if not isinstance(arguments, dict):
                return False
            value = arguments.get(key, MISSING)
            if value is MISSING:
                _refuse_case_variant(arguments, key)
                return False
            return check(value)
    else:

        def holds(arguments: Any) -> bool:
            value = lookup_json_path(arguments, steps)
            return value is not MISSING and check(value)

    return holds


def compile_argument_check(c: ArgumentConstraint) -> ArgumentCheck:
    """Compile one ``arguments`` constraint of a tool rule."""
    steps, check, description = _compile_constraint(c)
    return ArgumentCheck(_fuse(steps, check), description, steps)
