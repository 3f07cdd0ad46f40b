"""``haltgate iptables apply|remove`` against the real kernel, in a throwaway namespace."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from haltgate.testbed import netns as harness

pytestmark = pytest.mark.netns

HALTGATE = [str(Path(sys.executable).parent / "haltgate")]


def _save(ns: harness.Netns, backend: str = "") -> str:
    suffix = f"-{backend}" if backend else ""
    text = ""
    for tool in (f"iptables{suffix}-save", f"ip6tables{suffix}-save"):
        text += ns.run([tool]).stdout
    # Drop the timestamp comments and packet counters: they change between calls.
    return "\n".join(
        line.split(" [")[0] if line.startswith(":") else line
        for line in text.splitlines()
        if not line.startswith("#")
    )


def _apply(ns: harness.Netns, *args: str) -> None:
    ns.run([*HALTGATE, "iptables", "apply", "--proxy-uid", "17337", *args])


def test_apply_twice_gives_the_same_rules_and_remove_cleans_up(bare_netns: harness.Netns) -> None:
    before = _save(bare_netns)
    _apply(bare_netns, "--dns", "10.96.0.10", "--dns", "fd00::10", "--exclude-port", "5432")
    once = _save(bare_netns)
    assert "HALTGATE_OUTPUT" in once
    assert once.count("-j HALTGATE_OUTPUT") == 4  # nat + filter, v4 + v6
    _apply(bare_netns, "--dns", "10.96.0.10", "--dns", "fd00::10", "--exclude-port", "5432")
    assert _save(bare_netns) == once

    # A changed configuration replaces the chain content instead of appending to it.
    _apply(bare_netns, "--dns", "10.96.0.11")
    changed = _save(bare_netns)
    assert "10.96.0.10" not in changed and "10.96.0.11/32" in changed
    assert "5432" not in changed

    bare_netns.run([*HALTGATE, "iptables", "remove"])
    after = _save(bare_netns)
    assert "HALTGATE" not in after
    assert [x for x in after.splitlines() if x.startswith("-A")] == [
        x for x in before.splitlines() if x.startswith("-A")
    ]
    bare_netns.run([*HALTGATE, "iptables", "remove"])  # removing again is fine


def test_other_rules_in_output_are_left_alone(bare_netns: harness.Netns) -> None:
    bare_netns.run(["iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "9999", "-j", "ACCEPT"])
    _apply(bare_netns, "--no-dns")
    rules = bare_netns.run(["iptables", "-S", "OUTPUT"]).stdout.splitlines()
    # haltgate's jump comes first, the operator's own rule stays after it.
    assert rules[1] == "-A OUTPUT -j HALTGATE_OUTPUT"
    assert "-A OUTPUT -p udp -m udp --dport 9999 -j ACCEPT" in rules
    bare_netns.run([*HALTGATE, "iptables", "remove"])
    assert bare_netns.run(["iptables", "-S", "OUTPUT"]).stdout.splitlines()[1:] == [
        "-A OUTPUT -p udp -m udp --dport 9999 -j ACCEPT"
    ]


@pytest.mark.skipif(shutil.which("iptables-legacy-restore") is None, reason="no iptables-legacy")
def test_legacy_backend_round_trip(bare_netns: harness.Netns) -> None:
    _apply(bare_netns, "--backend", "legacy", "--no-dns")
    assert "HALTGATE_OUTPUT" in _save(bare_netns, "legacy")
    bare_netns.run([*HALTGATE, "iptables", "remove", "--backend", "legacy"])
    assert "HALTGATE_OUTPUT" not in _save(bare_netns, "legacy")
