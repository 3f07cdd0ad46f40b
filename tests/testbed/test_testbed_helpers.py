"""The test bed's own plumbing: bounded waits, process handling, binary lookup."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from haltgate.testbed import binaries
from haltgate.testbed.errors import TestbedError, log_tail
from haltgate.testbed.process import ManagedProcess, free_port, port_open, wait_until

LOAD_PROOF_SECONDS = 60
"""Bounds that separate "gave up / was killed" from "waited for the whole timeout" with a
margin of 100x over the timeouts involved (0.3-0.5 s), so a loaded machine cannot fail them;
each is paired with a timeout or a sleep far longer than itself."""


def test_wait_until_times_out_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("line one\nfatal: cannot bind\n")
    started = time.monotonic()
    with pytest.raises(TestbedError) as info:
        wait_until(lambda: False, timeout=0.3, what="server", log=log, interval=0.05)
    assert time.monotonic() - started < LOAD_PROOF_SECONDS  # it gave up, not hung
    assert "server: not ready after 0s" in str(info.value)
    assert "fatal: cannot bind" in str(info.value)


def test_wait_until_stops_at_once_when_the_process_died(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "quitter", [sys.executable, "-c", "print('bye')"], tmp_path / "q.log"
    ).start()
    started = time.monotonic()
    with pytest.raises(TestbedError, match="exited before it was ready") as info:
        wait_until(
            lambda: False,
            timeout=10 * LOAD_PROOF_SECONDS,
            what="quitter",
            log=proc.log,
            alive=proc.alive,
        )
    assert time.monotonic() - started < LOAD_PROOF_SECONDS  # long before its timeout
    assert "bye" in str(info.value)


def test_managed_process_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"print('ready', flush=True); time.sleep({2 * LOAD_PROOF_SECONDS})"
    )
    proc = ManagedProcess("stubborn", [sys.executable, "-c", code], tmp_path / "s.log").start()
    wait_until(lambda: "ready" in proc.log.read_text(), timeout=LOAD_PROOF_SECONDS, what="stubborn")
    started = time.monotonic()
    proc.stop(timeout=0.5)
    assert not proc.alive()
    assert time.monotonic() - started < LOAD_PROOF_SECONDS  # killed, not waited for
    proc.stop()  # idempotent


def test_free_port_is_bindable_and_closed() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert not port_open("127.0.0.1", port)


def test_log_tail_keeps_the_end(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("x" * 10_000 + "THE END")
    assert log_tail(log, 100).endswith("THE END")
    assert len(log_tail(log, 100)) < 120
    assert "no log" in log_tail(tmp_path / "missing.log")


def test_missing_binary_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HALTGATE_BIN_CACHE", str(tmp_path))
    assert binaries.cache_dir() == tmp_path
    with pytest.raises(TestbedError, match="make binaries"):
        binaries.require("kube-apiserver")
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert binaries.require("etcd") == fake
