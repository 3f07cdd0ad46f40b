"""The cannot-bypass proof: a pod namespace with the real iptables rules, the sidecar under its
UID, the agent under another, and stand-in upstreams plus canaries in a second namespace.

First a control run without the rules shows that every bypass attempt *would* reach its canary
(so each attempt can fail); then the rules go in and the same attempts must all fail while the
governed calls pass and are recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from haltgate.sidecar import tlsmint
from haltgate.testbed import netns as harness
from tests.netns import agent as agent_mod
from tests.netns.conftest import AGENT_UID, SIDECAR_UID

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
HALTGATE = str(Path(sys.executable).parent / "haltgate")
NAMES = ("llm.test", "mcp.test", "api.test", "vault.test")

POLICY = """\
apiVersion: haltgate.dev/v1alpha1
kind: GovernancePolicy
metadata: {name: netns, namespace: default}
spec:
  upstreams:
    - {name: llm, url: "https://llm.test", kind: llm, provider: openai, tls: inspect}
    - {name: mcp, url: "http://mcp.test/mcp", kind: mcp}
    - {name: api, url: "http://api.test:8080", kind: http}
    - {name: vault, url: "https://vault.test:8443", kind: http, tls: passthrough}
  tools:
    default: deny
    rules:
      - {name: llm, action: allow, kind: llm}
      - {name: mcp, action: allow, kind: mcp}
      - {name: known-apis, action: allow, kind: http, hosts: [api.test, vault.test]}
"""

# Attempts whose control run (no rules) cannot show a bypass: they need the sidecar to mean
# anything (Host checks, the listener's own port) or trust only the haltgate CA.
NEEDS_SIDECAR = {
    "tls_sni_host_mismatch",
    "transparent_port_direct",
    "transparent_connect_allowed_host",
}


@dataclass
class Pod:
    variant: str
    """``forwarder`` (listener + minimal handler), ``sidecar`` (``haltgate sidecar``, its
    default HTTP server, llhttp) or ``sidecar-aiohttp`` (``--http-server aiohttp``)."""
    topo: harness.Topology
    workdir: Path
    haltgate_ca: Path
    upstream_ca: Path
    events: Path
    record: Path

    def run_agent(self, names: list[str] | None = None) -> list[dict[str, object]]:
        env_argv = ["env", "-i", f"PYTHONPATH={REPO}", "PATH=/usr/bin:/bin", f"HOME={self.workdir}"]
        argv = [
            "setpriv",
            f"--reuid={AGENT_UID}",
            f"--regid={AGENT_UID}",
            "--clear-groups",
            *env_argv,
            sys.executable,
            "-m",
            "tests.netns.agent",
            "--haltgate-ca",
            str(self.haltgate_ca),
            "--upstream-ca",
            str(self.upstream_ca),
        ]
        if names:
            argv += ["--only", *names]
        elif self.sidecar:
            argv.append("--explicit")
        done = self.topo.pod.run(argv, timeout=240)
        results: list[dict[str, object]] = json.loads(done.stdout)
        return results

    @property
    def sidecar(self) -> bool:
        """The real ``haltgate sidecar`` (on either HTTP server), not the forwarder."""
        return self.variant.startswith("sidecar")

    def canary_events(self) -> list[dict[str, object]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line]

    def sidecar_admin(self, path: str, body: bytes | None = None) -> dict[str, object]:
        """The real sidecar's admin API, called as the sidecar UID with the token."""
        script = (
            "import sys,urllib.request\n"
            "data=sys.argv[3].encode() if len(sys.argv)>3 else None\n"
            "req=urllib.request.Request('http://127.0.0.1:17020'+sys.argv[2],data=data,"
            "headers={'Authorization':'Bearer '+open(sys.argv[1]).read().strip(),"
            "'Content-Type':'application/json'})\n"
            "print(urllib.request.urlopen(req,timeout=5).read().decode())\n"
        )
        argv = [
            "setpriv",
            f"--reuid={SIDECAR_UID}",
            f"--regid={SIDECAR_UID}",
            "--clear-groups",
            sys.executable,
            "-c",
            script,
            str(self.workdir / "admin-token"),
            path,
        ]
        if body is not None:
            argv.append(body.decode())
        done = self.topo.pod.run(argv)
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    def recorded_calls(self) -> list[dict[str, object]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]


def _table(results: list[dict[str, object]], expected: dict[str, bool]) -> str:
    lines = [f"{'attempt':34} {'expected':9} {'got':9} {'secs':>6}  detail"]
    for r in results:
        name = str(r["name"])
        want = "reach" if expected[name] else "blocked"
        got = "reach" if r["reached"] else "blocked"
        mark = "" if want == got else "   <-- WRONG"
        lines.append(f"{name:34} {want:9} {got:9} {r['seconds']:>6}  {r['detail']}{mark}")
    return "\n".join(lines)


def _start(
    ns: harness.Netns, argv: list[str], uid: int | None, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    proc = ns.popen(argv, uid=uid, env=env, log=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[2:4]} exited early:\n{log.read_text()[-3000:]}")
        if log.exists() and "ready" in log.read_text():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"{argv} not ready in 20s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _own(path: Path, mode: int) -> None:
    os.chown(path, SIDECAR_UID, SIDECAR_UID)
    path.chmod(mode)


@pytest.fixture(scope="module", params=["forwarder", "sidecar", "sidecar-aiohttp"])
def pod(request: pytest.FixtureRequest) -> Iterator[Pod]:
    variant: str = request.param
    reason = harness.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    for uid in (SIDECAR_UID, AGENT_UID):
        problem = harness.interpreter_reachable_by(uid)
        if problem is not None:
            pytest.fail(problem)
    # Not under pytest's tmp dir: that is 0700 root, and the sidecar and agent UIDs read here.
    workdir = Path(tempfile.mkdtemp(prefix="haltgate-netns-"))
    workdir.chmod(0o755)
    tag = harness.free_tag()
    topo = harness.Topology.create(tag)
    etc = Path("/etc/netns") / topo.pod.name
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The pod resolves the stand-in names through its own /etc/hosts (ip netns exec
        # bind-mounts /etc/netns/<name>/*), like a pod's DNS would answer.
        etc.mkdir(parents=True, exist_ok=True)
        hosts = [
            f"{harness.UPSTREAM_V4} {' '.join(NAMES)}",
            f"{harness.UPSTREAM_V6} {' '.join(NAMES)}",
            f"{harness.OTHER_V4} evil.test",
            "127.0.0.1 localhost",
            "::1 localhost",
        ]
        (etc / "hosts").write_text("\n".join(hosts) + "\n")
        (etc / "resolv.conf").write_text(f"nameserver {harness.UPSTREAM_V4}\n")
        # containerd's default: any group may open ping sockets; the rules must stop ICMP.
        topo.pod.run(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])

        ca = trustme.CA()
        cert = ca.issue_cert(*NAMES, "evil.test")
        upstream_ca = workdir / "upstream-ca.pem"
        ca.cert_pem.write_to_path(str(upstream_ca))
        cert_file, key_file = workdir / "upstream.pem", workdir / "upstream.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        ca_dir = workdir / "haltgate-ca"
        ca_dir.mkdir()
        os.chown(ca_dir, SIDECAR_UID, SIDECAR_UID)
        policy = workdir / "policy.yaml"
        policy.write_text(POLICY)
        record = workdir / "record.jsonl"
        for path in (record, Path(f"{record}.stats")):
            path.touch()
            os.chown(path, SIDECAR_UID, SIDECAR_UID)
        events = workdir / "events.jsonl"

        base_env = {
            "PYTHONPATH": str(REPO),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(workdir),
        }
        procs.append(
            _start(
                topo.upstream,
                [
                    sys.executable,
                    "-m",
                    "tests.netns.upstream_side",
                    "--named",
                    harness.UPSTREAM_V4,
                    harness.UPSTREAM_V6,
                    "--other",
                    harness.OTHER_V4,
                    harness.OTHER_V6,
                    "--cert",
                    str(cert_file),
                    "--key",
                    str(key_file),
                    "--events",
                    str(events),
                ],
                None,
                workdir / "upstream.log",
                base_env,
            )
        )
        sidecar_env = {**base_env, "SSL_CERT_FILE": str(upstream_ca)}
        if variant == "forwarder":
            procs.append(
                _start(
                    topo.pod,
                    [
                        sys.executable,
                        "-m",
                        "tests.netns.forwarder",
                        "--policy",
                        str(policy),
                        "--ca-dir",
                        str(ca_dir),
                        "--record",
                        str(record),
                        "--peek-timeout",
                        "1",
                    ],
                    SIDECAR_UID,
                    workdir / "sidecar.log",
                    sidecar_env,
                )
            )
        else:
            tlsmint.CertificateAuthority.create().write(ca_dir)
            _own(ca_dir / tlsmint.CA_KEY_FILE, 0o600)
            token = workdir / "admin-token"
            token.write_text("netns-admin-token\n")
            _own(token, 0o600)
            state = workdir / "state"
            state.mkdir()
            _own(state, 0o700)
            proc = topo.pod.popen(
                [
                    HALTGATE,
                    "sidecar",
                    "--policy",
                    str(policy),
                    "--ca-dir",
                    str(ca_dir),
                    "--state-dir",
                    str(state),
                    "--admin-token-file",
                    str(token),
                    "--mode",
                    "transparent",
                    # Every address (not the loopback default): the rules alone must keep
                    # the agent away from the admin and metrics ports.
                    "--admin-listen",
                    "0.0.0.0:17020",
                    "--metrics-listen",
                    "0.0.0.0:17090",
                    *(["--http-server", "aiohttp"] if variant == "sidecar-aiohttp" else []),
                ],
                uid=SIDECAR_UID,
                env=sidecar_env,
                log=workdir / "sidecar.log",
            )
            procs.append(proc)
            for port in (17001, 17000, 17020):
                harness.wait_port(topo.pod, "127.0.0.1", port, proc=proc)
        haltgate_ca = ca_dir / "ca.crt"
        yield Pod(variant, topo, workdir, haltgate_ca, upstream_ca, events, record)
    finally:
        for proc in procs:
            _stop(proc)
        topo.delete()
        shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def test_no_bypass_and_governed_calls_pass(pod: Pod) -> None:
    # Control: without the rules, each bypass attempt reaches its canary.
    # The real sidecar's admin API listens on IPv4 only: its IPv6 attempt cannot reach anyway.
    exempt = NEEDS_SIDECAR | ({"admin_port_loopback_v6"} if pod.sidecar else set())
    control_names = [n for n in agent_mod.BYPASS if n not in exempt]
    control = pod.run_agent(control_names)
    print(
        "\ncontrol run (no iptables rules):\n" + _table(control, dict.fromkeys(control_names, True))
    )
    assert all(r["reached"] for r in control), "an attempt cannot detect a bypass"
    canaries_before = len(pod.canary_events())
    assert canaries_before > 0

    pod.topo.pod.run(
        [
            HALTGATE,
            "iptables",
            "apply",
            "--proxy-uid",
            str(SIDECAR_UID),
            "--dns",
            harness.UPSTREAM_V4,
            "--dns",
            harness.UPSTREAM_V6,
        ]
    )
    results = pod.run_agent()
    expected = {
        **dict.fromkeys(agent_mod.GOVERNED + agent_mod.LAST, True),
        **dict.fromkeys(agent_mod.BYPASS, False),
    }
    if pod.sidecar:
        expected.update(
            {
                **dict.fromkeys(agent_mod.EXPLICIT_GOVERNED, True),
                **dict.fromkeys(agent_mod.EXPLICIT_BYPASS, False),
            }
        )
    table = _table(results, expected)
    print(f"\nwith the boundary ({pod.variant}):\n" + table)
    wrong = [r["name"] for r in results if r["reached"] != expected[str(r["name"])]]
    sidecar_log = (pod.workdir / "sidecar.log").read_text()[-4000:]
    assert not wrong, f"attempts with the wrong outcome: {wrong}\n{table}\n{sidecar_log}"
    assert all(r["uid"] == AGENT_UID for r in results)

    # Nothing reached a canary while the boundary was up.
    assert pod.canary_events()[canaries_before:] == []
    # The governed calls went through the sidecar and were recorded there.
    if pod.sidecar:
        # The redirected connections reached the selected HTTP server: pipelining works and
        # a smuggling attempt is refused by that server's parser (plain and inspected TLS).
        wire = {str(r["name"]): r for r in pod.run_agent(agent_mod.WIRE)}
        print(f"\nHTTP server on redirected connections: {wire}")
        server = "aiohttp" if pod.variant == "sidecar-aiohttp" else "llhttp"
        assert wire["wire_plain_pipelined"]["reached"], wire
        for name in ("wire_plain_smuggle", "wire_inspected_smuggle"):
            assert (wire[name]["reached"], wire[name]["detail"]) == (False, server), wire
        status = pod.sidecar_admin("/status")
        decisions = status["decisions"]
        assert isinstance(decisions, dict)
        # 5 inspected LLM calls, MCP, API, explicit alias; passthrough is a connection record.
        assert decisions["allow"] >= 8, status
        # A halt is final on every path, passthrough tunnels included.
        pod.sidecar_admin("/halt", b'{"message": "netns test halt"}')
        halted = pod.run_agent(
            ["tls_passthrough", "llm_https_inspected", "api_plain_http", "explicit_alias_call"]
        )
        print(
            "\nafter an admin halt:\n"
            + _table(halted, dict.fromkeys([str(r["name"]) for r in halted], False))
        )
        assert not any(r["reached"] for r in halted)
        return
    calls = pod.recorded_calls()
    assert {(c["host"], c["path"]) for c in calls} >= {
        ("llm.test", "/v1/chat/completions"),
        ("mcp.test", "/mcp"),
        ("api.test", "/items"),
    }
    assert any(c["host"] == "llm.test" and ":" in str(c["ip"]) for c in calls)  # via IPv6
    stats = json.loads((pod.record.parent / "record.jsonl.stats").read_text())
    assert stats["passthrough_opened"] >= 1
