"""The demo's first steps: the services around the sidecar (PostgreSQL for the audit trail,
OPA, the stand-in LLM and MCP servers), on the host or in network namespaces."""

from __future__ import annotations

import functools
import sys

from haltgate.cli.demo_setting import OPA_PORT, POD_IP, STANDIN_PORTS
from haltgate.cli.demo_shell import http_call, probe_port, run_checked, wait_for
from haltgate.cli.demo_state import Demo


def postgres(d: Demo) -> None:
    from haltgate.testbed.postgres import remove, start_postgres

    d.console.step("Embedded PostgreSQL for the audit trail")
    server = start_postgres()
    d.stack.callback(remove, server)
    admin = server.dsn()
    run_checked(
        [
            sys.executable,
            "-c",
            "import psycopg, sys; "
            "psycopg.connect(sys.argv[1], autocommit=True).execute('CREATE DATABASE audit')",
            admin,
        ]
    )
    d.audit_dsn = server.dsn("audit")
    run_checked([d.haltgate, "audit", "migrate", "--dsn", d.audit_dsn])
    d.console.ok(
        f"PostgreSQL on 127.0.0.1:{server.port}, audit schema migrated (`haltgate audit migrate`)"
    )


def opa(d: Demo) -> None:
    d.console.step("OPA (the Go binary) for the policy's Rego")
    if d.mode == "netns":
        # Next to the sidecar in the pod namespace, like the injected container.
        from haltgate.testbed import netns as harness

        port = OPA_PORT
        proc = d.spawn(
            "opa",
            d.topo.pod.exec_argv(
                [
                    str(d.bin_dir / "opa"),
                    "run",
                    "--server",
                    f"--addr=127.0.0.1:{port}",
                    "--disable-telemetry",
                ]
            ),
        )
        harness.wait_port(d.topo.pod, "127.0.0.1", port, timeout=30, proc=proc.popen)
        d.urls["opa"] = f"http://127.0.0.1:{port}"
    else:
        port = d.free_port()
        proc = d.spawn(
            "opa",
            [
                str(d.bin_dir / "opa"),
                "run",
                "--server",
                f"--addr=127.0.0.1:{port}",
                "--disable-telemetry",
            ],
        )
        d.urls["opa"] = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: http_call("GET", d.urls["opa"] + "/health")[0] == 200,
            timeout=30,
            what="OPA",
            alive=proc.alive,
        )
    d.console.ok(f"OPA on {d.urls['opa']} (starts empty; the sidecar uploads the Rego)")


def standins(d: Demo) -> None:
    d.console.step("Stand-in LLM (OpenAI-compatible) and MCP tool server")
    if d.mode == "netns":
        _standins_in_netns(d)
        return
    for name in ("llm", "mcp"):
        port = d.free_port()
        module = f"haltgate.testbed.standins.{name}"
        proc = d.spawn(
            f"standin-{name}",
            [sys.executable, "-m", module, "--port", str(port), "--no-record"],
        )
        d.urls[name] = f"http://127.0.0.1:{port}"
        wait_for(
            functools.partial(probe_port, port),
            timeout=30,
            what=f"{name} stand-in",
            alive=proc.alive,
        )
    d.console.ok(f"LLM on {d.urls['llm']}, MCP on {d.urls['mcp']}/mcp")


def _standins_in_netns(d: Demo) -> None:
    from haltgate.testbed import netns as harness

    topo = harness.Topology.create(harness.free_tag())
    d.stack.callback(topo.delete)
    d.topo = topo
    d.console.info(
        f"network namespaces: pod {topo.pod.name} ({POD_IP}) <-veth-> "
        f"upstream {topo.upstream.name} ({harness.UPSTREAM_V4})"
    )
    for name, port in STANDIN_PORTS.items():
        proc = d.spawn(
            f"standin-{name}",
            topo.upstream.exec_argv(
                [
                    sys.executable,
                    "-m",
                    f"haltgate.testbed.standins.{name}",
                    "--host",
                    harness.UPSTREAM_V4,
                    "--port",
                    str(port),
                    "--no-record",
                ]
            ),
        )
        harness.wait_port(topo.upstream, harness.UPSTREAM_V4, port, timeout=30, proc=proc.popen)
        d.urls[name] = f"http://{harness.UPSTREAM_V4}:{port}"
    d.console.ok(f"LLM on {d.urls['llm']}, MCP on {d.urls['mcp']}/mcp (upstream namespace)")
