"""The rule set as text: what ``--dry-run`` prints and ``apply`` installs (no root needed)."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from haltgate.cli.main import main
from haltgate.sidecar import iptables as rules


def _config(**kw: object) -> rules.RuleConfig:
    base: dict[str, object] = {"proxy_uid": 17337, "dns_servers": ("10.96.0.10", "fd00::10")}
    base.update(kw)
    return rules.RuleConfig(**base)  # type: ignore[arg-type]


def test_nat_redirects_every_other_uid_tcp_last() -> None:
    nat = rules.nat_rules(_config(), rules.Family.IPV4)
    assert nat.rules[0] == ["-m", "owner", "--uid-owner", "17337", "-j", "RETURN"]
    assert nat.rules[-1] == ["-p", "tcp", "-j", "REDIRECT", "--to-ports", "17001"]
    assert nat.jump == ("-p", "tcp")


def test_filter_accepts_redirected_traffic_by_destination_not_only_lo() -> None:
    for family, loopback in ((rules.Family.IPV4, "127.0.0.0/8"), (rules.Family.IPV6, "::1/128")):
        flt = rules.filter_rules(_config(), family)
        assert ["-o", "lo", "-j", "RETURN"] in flt.rules
        assert ["-d", loopback, "-j", "RETURN"] in flt.rules
        assert flt.rules[-1] == ["-j", "DROP"]


def test_protected_ports_refused_before_loopback_is_accepted() -> None:
    flt = rules.filter_rules(_config(), rules.Family.IPV4).rules
    lo = flt.index(["-o", "lo", "-j", "RETURN"])
    uid = flt.index(["-m", "owner", "--uid-owner", "17337", "-j", "RETURN"])
    for port in (17020, 17090):
        reject = flt.index(
            ["-p", "tcp", "--dport", str(port), "-j", "REJECT", "--reject-with", "tcp-reset"]
        )
        assert uid < reject < lo


def test_dns_only_to_resolvers_of_the_family() -> None:
    v4 = rules.filter_rules(_config(), rules.Family.IPV4).rules
    v6 = rules.filter_rules(_config(), rules.Family.IPV6).rules
    assert ["-p", "udp", "-d", "10.96.0.10/32", "--dport", "53", "-j", "RETURN"] in v4
    assert not any("fd00::10/128" in r for r in v4)
    assert ["-p", "udp", "-d", "fd00::10/128", "--dport", "53", "-j", "RETURN"] in v6
    # No rule lets port 53 out to any address.
    for r in v4 + v6:
        if "53" in r:
            assert "-d" in r


def test_no_resolver_means_no_dns_rule() -> None:
    flt = rules.filter_rules(_config(dns_servers=()), rules.Family.IPV4).rules
    assert not any("53" in r for r in flt)


def test_icmpv6_neighbour_discovery_only_in_ipv6() -> None:
    v4 = rules.render(_config(), [rules.Family.IPV4])
    v6 = rules.render(_config(), [rules.Family.IPV6])
    assert "icmpv6" not in v4
    assert "--icmpv6-type 135" in v6
    assert "--icmpv6-type 128" not in v6  # echo request (ping) stays dropped


@pytest.mark.parametrize(
    "kw",
    [
        {"proxy_uid": -1},
        {"proxy_port": 0},
        {"exclude_ports": (70000,)},
        {"exclude_ports": (17001,)},
        {"dns_servers": ("not-an-ip",)},
    ],
)
def test_bad_config_is_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _config(**kw)


def test_restore_payload_declares_chain_and_jumps_only_when_asked() -> None:
    nat = rules.nat_rules(_config(), rules.Family.IPV4)
    with_jump = rules.restore_payload(nat, add_jump=True)
    without = rules.restore_payload(nat, add_jump=False)
    assert with_jump.startswith("*nat\n:HALTGATE_OUTPUT - [0:0]\n-I OUTPUT 1 -p tcp -j ")
    assert "-I OUTPUT" not in without
    assert without.endswith("COMMIT\n")


def test_cli_dry_run_prints_both_families_and_changes_nothing() -> None:
    result = CliRunner().invoke(
        main,
        [
            "iptables",
            "apply",
            "--proxy-uid",
            "17337",
            "--dns",
            "10.96.0.10",
            "--exclude-port",
            "5432",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "# iptables-restore --noflush" in result.output
    assert "# ip6tables-restore --noflush" in result.output
    assert "-A HALTGATE_OUTPUT -p tcp --dport 5432 -j RETURN" in result.output
    assert "-A HALTGATE_OUTPUT -p tcp -j REDIRECT --to-ports 17001" in result.output


def test_cli_rejects_bad_values_with_usage_error() -> None:
    result = CliRunner().invoke(
        main, ["iptables", "apply", "--proxy-uid", "17337", "--dns", "nope", "--dry-run"]
    )
    assert result.exit_code == 2
    assert "nope" in result.output


def test_cli_no_dns_conflicts_with_dns() -> None:
    result = CliRunner().invoke(
        main, ["iptables", "apply", "--proxy-uid", "1", "--no-dns", "--dns", "1.1.1.1", "--dry-run"]
    )
    assert result.exit_code == 2


def test_resolv_conf_parsing(tmp_path: object) -> None:
    from pathlib import Path

    conf = Path(str(tmp_path)) / "resolv.conf"
    conf.write_text(
        "search default.svc.cluster.local\nnameserver 10.96.0.10\n"
        "nameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n"
    )
    assert rules.system_resolvers(conf) == ["10.96.0.10", "fe80::1"]


class FakeIptables:
    """Stands in for the iptables binaries (outside haltgate): records calls, answers -C."""

    def __init__(self, jumps_present: int = 0, fail_restore: bool = False, ahead: str = "") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.jumps = jumps_present
        self.fail_restore = fail_restore
        self.ahead = ahead
        """A rule another installer put first in OUTPUT (empty: none)."""

    def __call__(self, argv: object, stdin: str | None) -> subprocess.CompletedProcess[str]:
        args = list(argv)  # type: ignore[call-overload]
        self.calls.append((args, stdin))
        code, err = 0, ""
        if args[-2:] == ["-S", "OUTPUT"]:
            jump = (
                "-A OUTPUT -p tcp -j HALTGATE_OUTPUT"
                if "nat" in args
                else ("-A OUTPUT -j HALTGATE_OUTPUT")
            )
            lines = ["-P OUTPUT ACCEPT", *([self.ahead] if self.ahead else [])]
            return subprocess.CompletedProcess(
                args, 0, "\n".join([*lines, *[jump] * self.jumps]) + "\n", ""
            )
        if "-C" in args:
            code = 0 if self.jumps > 0 else 1
        elif "-D" in args:
            self.jumps -= 1
        elif args[0].endswith("-restore") and self.fail_restore:
            code, err = 2, "iptables-restore: line 3 failed"
        return subprocess.CompletedProcess(args, code, "", err)


def test_apply_adds_the_jump_only_when_missing() -> None:
    fake = FakeIptables(jumps_present=0)
    rules.Installer(runner=fake, families=[rules.Family.IPV4]).apply(_config())
    payloads = [stdin for argv, stdin in fake.calls if argv[0] == "iptables-restore"]
    assert len(payloads) == 2 and all(p and "-I OUTPUT 1" in p for p in payloads)

    fake = FakeIptables(jumps_present=1)
    rules.Installer(runner=fake, families=[rules.Family.IPV4, rules.Family.IPV6]).apply(_config())
    restores = [(argv[0], stdin) for argv, stdin in fake.calls if argv[0].endswith("-restore")]
    assert [r[0] for r in restores] == ["iptables-restore"] * 2 + ["ip6tables-restore"] * 2
    assert all(stdin and "-I OUTPUT" not in stdin for _, stdin in restores)


def test_apply_moves_a_jump_that_is_not_first_back_to_the_top_in_one_commit() -> None:
    """A mesh's jump inserted ahead of haltgate's: every copy of haltgate's jump is deleted
    and one inserted first, in the same restore payload (no moment without it)."""
    fake = FakeIptables(jumps_present=2, ahead="-A OUTPUT -p tcp -j ISTIO_OUTPUT")
    rules.Installer(runner=fake, families=[rules.Family.IPV4]).apply(_config())
    payloads = [stdin or "" for argv, stdin in fake.calls if argv[0] == "iptables-restore"]
    nat = payloads[0].splitlines()
    assert nat.count("-D OUTPUT -p tcp -j HALTGATE_OUTPUT") == 2
    assert nat.index("-D OUTPUT -p tcp -j HALTGATE_OUTPUT") < nat.index(
        "-I OUTPUT 1 -p tcp -j HALTGATE_OUTPUT"
    )
    assert "-D OUTPUT -j HALTGATE_OUTPUT" in payloads[1].splitlines()


def test_jump_place_reads_the_output_listing() -> None:
    nat = rules.nat_rules(_config(), rules.Family.IPV4)
    mesh = "-A OUTPUT -p tcp -j ISTIO_OUTPUT"
    ours = "-A OUTPUT -p tcp -j HALTGATE_OUTPUT"
    assert rules.jump_place(f"-P OUTPUT ACCEPT\n{ours}\n{mesh}\n", nat) == rules.JumpPlace(
        first=True, count=1
    )
    assert rules.jump_place(f"-P OUTPUT ACCEPT\n{mesh}\n{ours}\n", nat) == rules.JumpPlace(
        first=False, count=1, ahead=mesh
    )
    assert rules.jump_place("-P OUTPUT ACCEPT\n", nat) == rules.JumpPlace(first=False, count=0)


def test_apply_failure_is_an_error_with_the_tool_output() -> None:
    fake = FakeIptables(fail_restore=True)
    with pytest.raises(rules.IptablesError, match="line 3 failed"):
        rules.Installer(runner=fake, families=[rules.Family.IPV4]).apply(_config())


def test_remove_deletes_duplicate_jumps_bounded() -> None:
    fake = FakeIptables(jumps_present=3)
    rules.Installer(runner=fake, families=[rules.Family.IPV4]).remove()
    deletes = [argv for argv, _ in fake.calls if "-D" in argv]
    assert len(deletes) == 3
    assert any("-X" in argv for argv, _ in fake.calls)


def test_backend_selects_the_binaries() -> None:
    assert rules.Tool(rules.Family.IPV6, rules.Backend.LEGACY).restore == (
        "ip6tables-legacy-restore"
    )
    assert rules.Tool(rules.Family.IPV4).command("-S") == ["iptables", "-w", "5", "-S"]


def test_mesh_proxy_uid_is_left_to_the_mesh_but_kept_off_the_admin_port() -> None:
    """agent -> haltgate -> mesh proxy -> network: Envoy's (1337) own connections are not
    redirected to haltgate (a loop) nor dropped, and it may not reach haltgate's admin."""
    nat = rules.nat_rules(_config(mesh_uids=(1337,)), rules.Family.IPV4).rules
    mesh = ["-m", "owner", "--uid-owner", "1337", "-j", "RETURN"]
    assert nat.index(mesh) < nat.index(["-p", "tcp", "-j", "REDIRECT", "--to-ports", "17001"])
    flt = rules.filter_rules(_config(mesh_uids=(1337,)), rules.Family.IPV6).rules
    admin = flt.index(
        ["-p", "tcp", "--dport", "17020", "-j", "REJECT", "--reject-with", "tcp-reset"]
    )
    assert admin < flt.index(mesh) < flt.index(["-j", "DROP"])
    assert mesh not in rules.nat_rules(_config(), rules.Family.IPV4).rules
    with pytest.raises(ValueError, match="sidecar's own UID"):
        _config(mesh_uids=(17337,))
    result = CliRunner().invoke(
        main,
        [
            "iptables",
            "apply",
            "--proxy-uid",
            "17337",
            "--dns",
            "10.96.0.10",
            "--mesh-uids",
            "1337,2102",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "-A HALTGATE_OUTPUT -m owner --uid-owner 2102 -j RETURN" in result.output
    bad = CliRunner().invoke(
        main, ["iptables", "apply", "--proxy-uid", "17337", "--mesh-uids", "envoy", "--dry-run"]
    )
    assert bad.exit_code == 2 and "--mesh-uids" in bad.output
