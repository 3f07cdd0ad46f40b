"""Network namespaces for the boundary tests: a "pod" and an "upstream" joined by a veth pair.

Everything is bounded: each command has a timeout, each wait a deadline. Namespace names carry
the test process id so parallel or crashed runs never collide, and teardown deletes them.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

COMMAND_TIMEOUT = 20.0

POD_V4 = "10.77.0.2"
UPSTREAM_V4 = "10.77.0.1"
POD_V6 = "fd77::2"
UPSTREAM_V6 = "fd77::1"
# A second address on the upstream side that no policy names: "direct IP" attempts go here.
OTHER_V4 = "10.77.0.9"
OTHER_V6 = "fd77::9"


def skip_reason() -> str | None:
    """Why the netns tests cannot run here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "netns tests need root (CI runs them as root)"
    for tool in ("ip", "iptables-restore", "ip6tables-restore", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install iptables iproute2 util-linux)"
    probe = f"hgprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=10)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, bounded; raise with its output when ``check`` and it failed."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, input=stdin, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[:2000]}"
        )
    return result


@dataclass
class Netns:
    name: str

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return run(self.exec_argv(argv), **kw)  # type: ignore[arg-type]

    def popen(
        self,
        argv: Sequence[str],
        *,
        uid: int | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in the namespace, optionally under another UID."""
        prefix: list[str] = []
        if uid is not None:
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        if log is None:
            return subprocess.Popen(
                self.exec_argv([*prefix, *argv]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with open(log, "wb") as out:
            return subprocess.Popen(
                self.exec_argv([*prefix, *argv]),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def delete(self) -> None:
        run(["ip", "netns", "del", self.name], check=False)


@dataclass
class Topology:
    """pod <-veth-> upstream, IPv4 and IPv6, plus an extra unnamed address on the upstream."""

    pod: Netns
    upstream: Netns

    @classmethod
    def create(cls, tag: str) -> Topology:
        pod, upstream = Netns(f"hg-pod-{tag}"), Netns(f"hg-up-{tag}")
        for ns in (pod, upstream):
            ns.delete()
            run(["ip", "netns", "add", ns.name])
            ns.run(["ip", "link", "set", "lo", "up"])
        veth_pod, veth_up = f"hgp{tag}"[:15], f"hgu{tag}"[:15]
        run(["ip", "link", "add", veth_pod, "type", "veth", "peer", "name", veth_up])
        run(["ip", "link", "set", veth_pod, "netns", pod.name])
        run(["ip", "link", "set", veth_up, "netns", upstream.name])
        for ns, dev, v4, v6 in (
            (pod, veth_pod, POD_V4, POD_V6),
            (upstream, veth_up, UPSTREAM_V4, UPSTREAM_V6),
        ):
            ns.run(["ip", "addr", "add", f"{v4}/24", "dev", dev])
            # nodad: the address is usable at once instead of after duplicate detection.
            ns.run(["ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
            ns.run(["ip", "link", "set", dev, "up"])
        upstream.run(["ip", "addr", "add", f"{OTHER_V4}/24", "dev", veth_up])
        upstream.run(["ip", "-6", "addr", "add", f"{OTHER_V6}/64", "dev", veth_up, "nodad"])
        return cls(pod, upstream)

    def delete(self) -> None:
        self.pod.delete()
        self.upstream.delete()


def wait_port(
    ns: Netns,
    host: str,
    port: int,
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until ``host:port`` accepts TCP inside ``ns`` (root, not redirected)."""
    script = (
        "import socket,sys\n"
        "s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)\n"
        "s.close()\n"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before {host}:{port} opened")
        done = ns.run([sys.executable, "-c", script, host, str(port)], check=False, timeout=5)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} in {ns.name} did not open within {timeout:g}s")


def interpreter_reachable_by(uid: int) -> str | None:
    """Why ``uid`` cannot run this Python (e.g. under a 0700 home), or None if it can."""
    path = Path(sys.executable).resolve()
    for parent in [*reversed(path.parents), path]:
        mode = parent.stat().st_mode
        other = stat.S_IXOTH if parent != path else stat.S_IXOTH | stat.S_IROTH
        if parent.stat().st_uid != uid and not mode & other:
            return (
                f"{parent} (mode {stat.filemode(mode)}) keeps UID {uid} from running {path}: "
                f"run `chmod o+x {parent}` (the CI script does this for $HOME)"
            )
    check = run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            sys.executable,
            "-c",
            "import haltgate.sidecar.transparent",
        ],
        check=False,
    )
    if check.returncode != 0:
        return f"UID {uid} cannot import haltgate with {path}: {check.stderr.strip()[-500:]}"
    return None


def free_tag() -> str:
    """A short unique tag for namespace and interface names."""
    return f"{os.getpid() % 100000}{int(time.monotonic() * 1000) % 1000}"


def ipv6_literal(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
