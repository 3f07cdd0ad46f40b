"""The processes ``bench/http_floor.py`` measures: the relays (``bench/_floor_variants.py``,
today's aiohttp relay from ``bench/sidecar_overhead.py``, granian), nginx with its
configuration, the stand-in LLM behind TLS, and the CPU time of a process tree.

``python bench/_floor_targets.py --serve-tls-upstream PLAIN_PORT TLS_PORT KEY_AND_CHAIN``
serves the stand-in LLM on a plain and a TLS port from one process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import sidecar_overhead as so

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable
RELAY = "aiohttp relay"
STANDIN = [PY, "-m", "haltgate.testbed.standins.llm"]


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def nginx_conf(tmp: Path, port: int, upstream_port: int, ca: str | None) -> Path:
    conf = tmp / "nginx.conf"
    scheme = "https" if ca else "http"
    tls = (
        f"proxy_ssl_trusted_certificate {ca}; proxy_ssl_verify on; "
        "proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
        if ca
        else ""
    )
    conf.write_text(
        f"""daemon off;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream llm {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/[^/]+(/.*)$ {{
      proxy_pass {scheme}://llm$1$is_args$args;
      {tls}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    )
    return conf


def spawn(cmd: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def start_targets(
    upstream: str,
    up_port: int,
    env: dict[str, str],
    tmp: Path,
    skipped: list[str],
    hybrids: bool = True,
    tls: bool = False,
) -> list[Target]:
    """The relays (and nginx), listening; ``hybrids``: also the two one-leg swaps."""
    targets: list[Target] = []

    def add(
        name: str, cmd: list[str], cwd: Path = REPO, extra: dict[str, str] | None = None
    ) -> None:
        port = so.free_port()
        cmd = [c.replace("{port}", str(port)) for c in cmd]
        targets.append(Target(name, port, spawn(cmd, {**env, **(extra or {})}, cwd)))

    add(RELAY, [PY, str(BENCH / "sidecar_overhead.py"), "--serve-bare-relay", "{port}", upstream])
    variants = str(BENCH / "_floor_variants.py")
    add("httptools relay", [PY, variants, "httptools", "{port}", upstream])
    if hybrids:
        add("httptools + aiohttp client", [PY, variants, "httptools-aiohttp", "{port}", upstream])
        add("aiohttp server + raw pool", [PY, variants, "aiohttp-pool", "{port}", upstream])
    if importlib.util.find_spec("pyreqwest"):
        add("httptools + pyreqwest", [PY, variants, "httptools-pyreqwest", "{port}", upstream])
    else:
        skipped.append("httptools + pyreqwest: pyreqwest is not installed (bench extra)")
    if importlib.util.find_spec("granian"):
        add(
            "granian RSGI",
            [
                PY, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1",
                "--port", "{port}", "--workers", "1", "--loop", "uvloop", "--no-ws",
                "--http", "1", "--log-level", "warning", "--no-access-log",
                "_floor_variants:rsgi_app",
            ],
            cwd=BENCH,
            extra={"FLOOR_UPSTREAM": upstream},
        )  # fmt: skip
    else:
        skipped.append("granian RSGI: granian is not installed (bench extra)")
    nginx = shutil.which("nginx")
    if nginx:
        port = so.free_port()
        conf = nginx_conf(tmp, port, up_port, env.get("SSL_CERT_FILE") if tls else None)
        targets.append(Target("nginx (native floor)", port, spawn([nginx, "-c", str(conf)], env)))
    else:
        skipped.append("nginx: not installed (apt-get install nginx-light)")
    for t in targets:
        so.wait_port(t.port, t.proc, t.name)
    return targets


def bench_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
    }


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tls_files(tmp: Path, env: dict[str, str]) -> str:
    """A throwaway CA (trusted by the relays through ``SSL_CERT_FILE``) and the stand-in's
    certificate for 127.0.0.1 and localhost; returns the key + chain file."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    env["SSL_CERT_FILE"] = str(tmp / "ca.pem")
    return str(tmp / "server.pem")


def serve_tls_upstream(plain_port: int, tls_port: int, chain: str) -> None:
    """The stand-in LLM on a plain and a TLS port, one process, one app."""
    import ssl

    import uvloop
    from aiohttp import web

    from haltgate.testbed.standins import llm

    async def run() -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(chain)
        runner = web.AppRunner(llm.create_app(record=False), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", plain_port).start()
        await web.TCPSite(runner, "127.0.0.1", tls_port, ssl_context=ctx).start()
        await asyncio.Event().wait()

    uvloop.run(run())


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "--serve-tls-upstream":
        raise SystemExit(__doc__)
    serve_tls_upstream(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
