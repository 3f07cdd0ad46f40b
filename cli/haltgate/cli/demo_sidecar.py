"""The demo's sidecar step: the sidecar with the demo's policy, on the host (explicit mode)
or as the pod's UID in a network namespace behind haltgate's iptables rules."""

from __future__ import annotations

import functools

from haltgate.cli.demo_setting import NAMESPACE, OPA_PORT, POD_IP, POD_NAME, SIDECAR_UID
from haltgate.cli.demo_shell import clean_env, http_call, own_path, wait_for
from haltgate.cli.demo_state import Demo


def sidecar(d: Demo) -> None:
    d.console.step("The sidecar, with the same policy, in front of the agent")
    if d.mode == "netns":
        _sidecar_in_netns(d)
        return
    for name in ("explicit", "admin", "metrics"):
        d.ports[name] = d.free_port()
    policy_file = d.workdir / "policy.yaml"
    token = d.workdir / "admin-token"
    token.write_text("demo-admin-token-0123456789abcdef")
    d.state_dir = d.workdir / "sidecar-state"
    env = {**clean_env(), "HALTGATE_POD_NAME": POD_NAME, "HALTGATE_POD_NAMESPACE": NAMESPACE}
    proc = d.spawn(
        "sidecar",
        [
            d.haltgate,
            "sidecar",
            "--policy",
            str(policy_file),
            "--mode",
            "explicit",
            "--state-dir",
            str(d.state_dir),
            "--admin-token-file",
            str(token),
            "--listen",
            f"127.0.0.1:{d.ports['explicit']}",
            "--admin-listen",
            f"127.0.0.1:{d.ports['admin']}",
            "--metrics-listen",
            f"127.0.0.1:{d.ports['metrics']}",
            "--opa-url",
            d.urls["opa"],
            "--log-level",
            "warning",
        ],
        env=env,
    )
    d.sidecar_proc = proc
    wait_for(
        lambda: http_call("GET", f"http://127.0.0.1:{d.ports['admin']}/readyz")[0] == 200,
        timeout=60,
        what="sidecar",
        alive=proc.alive,
        log=d.workdir / "logs" / "sidecar.log",
    )
    d.console.ok(
        f"sidecar ready; explicit mode: the agent calls "
        f"http://127.0.0.1:{d.ports['explicit']}/llm/v1 and /tools "
        "(base-URL aliases)"
    )
    d.console.info(
        "(a pod uses transparent mode: iptables sends every connection to "
        "the sidecar; this demo runs the agent on the host, so it uses the "
        "aliases)"
    )


def _sidecar_in_netns(d: Demo) -> None:
    """The pod's view: the sidecar as UID 17337 in transparent mode, then the init step's
    `haltgate iptables apply` in the pod namespace."""
    from haltgate.sidecar import tlsmint
    from haltgate.testbed import netns as harness

    d.ports.update(explicit=17000, transparent=17001, admin=17020, metrics=17090)
    own = functools.partial(own_path, SIDECAR_UID)
    ca_dir = d.workdir / "haltgate-ca"
    ca_dir.mkdir()
    tlsmint.CertificateAuthority.create().write(ca_dir)
    own(ca_dir, 0o700)
    own(ca_dir / tlsmint.CA_KEY_FILE, 0o600)
    token = d.workdir / "admin-token"
    token.write_text("demo-admin-token-0123456789abcdef")
    own(token, 0o600)
    d.state_dir = d.workdir / "sidecar-state"
    d.state_dir.mkdir()
    own(d.state_dir, 0o700)
    (d.workdir / "policy.yaml").chmod(0o644)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(d.workdir),
        "HALTGATE_POD_NAME": POD_NAME,
        "HALTGATE_POD_NAMESPACE": NAMESPACE,
    }
    proc = d.spawn(
        "sidecar",
        d.topo.pod.exec_argv(
            [
                "setpriv",
                f"--reuid={SIDECAR_UID}",
                f"--regid={SIDECAR_UID}",
                "--clear-groups",
                d.haltgate,
                "sidecar",
                "--policy",
                str(d.workdir / "policy.yaml"),
                "--mode",
                "transparent",
                "--ca-dir",
                str(ca_dir),
                # On the pod IP, as the injected sidecar: Prometheus scrapes it from outside.
                "--metrics-listen",
                f"{POD_IP}:{d.ports['metrics']}",
                "--state-dir",
                str(d.state_dir),
                "--admin-token-file",
                str(token),
                "--opa-url",
                d.urls["opa"],
                "--log-level",
                "warning",
            ]
        ),
        env=env,
    )
    d.sidecar_proc = proc
    for port in (d.ports["transparent"], d.ports["explicit"], d.ports["admin"]):
        harness.wait_port(d.topo.pod, "127.0.0.1", port, timeout=60, proc=proc.popen)
    d.console.ok(
        f"sidecar ready as UID {SIDECAR_UID} in {d.topo.pod.name} "
        "(transparent mode, like the injected haltgate-proxy)"
    )
    argv = [
        d.haltgate,
        "iptables",
        "apply",
        "--proxy-uid",
        str(SIDECAR_UID),
        "--proxy-port",
        str(d.ports["transparent"]),
        "--no-dns",
    ]
    for port in (d.ports["admin"], d.ports["metrics"], OPA_PORT, 8282):
        argv += ["--protect-port", str(port)]
    d.console.info(f"$ ip netns exec {d.topo.pod.name} haltgate {' '.join(argv[1:])}")
    d.topo.pod.run(argv)
    d.console.ok(
        "iptables rules in place (what the haltgate-init container does): "
        f"every TCP connection of every UID but {SIDECAR_UID} goes to the "
        "sidecar"
    )
