"""What the node agent installs for a node-mode pod (pure): which pods are node-mode, the
template's init-container rules, and the resolvers the kubelet gives each DNS policy."""

from __future__ import annotations

from typing import Any

import pytest

from haltgate.operator import (
    injection,
    injection_outcome,
    injection_template,
    node_redirect,
    pod_mutation,
)

TEMPLATE = injection_template.InjectionTemplate.load(injection_template.default_template_path())
CLUSTER, NODE = ("10.96.0.10",), ("192.168.1.1", "192.168.1.2")


def injected(redirect: str) -> dict[str, Any]:
    out = pod_mutation.mutate_pod(
        {"metadata": {"name": "a", "labels": {}}, "spec": {"containers": [{"name": "c"}]}},
        namespace="agents",
        namespace_labels={injection.LABEL_NAMESPACE_INJECTION: "enabled"},
        policies=[
            injection_outcome.PolicyRef(name="p", generation=1, selector={"matchLabels": {}})
        ],
        config=injection.InjectionConfig(redirect=redirect),  # type: ignore[arg-type]
        template=TEMPLATE,
    )
    assert isinstance(out, injection_outcome.Inject)
    return out.pod


def test_node_mode_is_the_injected_pod_with_the_verify_step() -> None:
    assert node_redirect.is_node_mode(injected("node"))
    assert not node_redirect.is_node_mode(injected("init"))
    forged = injected("node")
    del forged["metadata"]["annotations"][injection.ANNOTATION_INJECTED]
    assert not node_redirect.is_node_mode(forged)


def test_rules_are_the_init_containers() -> None:
    config = injection.InjectionConfig(mesh_proxy_uids=(1337,))
    args = node_redirect.template_apply_args(config, TEMPLATE)
    init = TEMPLATE.render(config.template_values(policy="x", mode="transparent"))
    assert args == init["initContainer"]["args"][2:]
    assert args[:2] == ["--proxy-uid", "17337"] and "1337" in args


def test_template_without_the_iptables_step_is_refused() -> None:
    sections = dict(TEMPLATE.sections)
    sections["initContainer"] = {**sections["initContainer"], "args": ["sidecar"]}
    bad = injection_template.InjectionTemplate(sections)
    with pytest.raises(node_redirect.NodeRedirectError, match="initContainer"):
        node_redirect.template_apply_args(injection.InjectionConfig(), bad)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ({}, ["10.96.0.10"]),
        ({"dnsPolicy": "ClusterFirst"}, ["10.96.0.10"]),
        ({"dnsPolicy": "ClusterFirstWithHostNet"}, ["10.96.0.10"]),
        ({"dnsPolicy": "Default"}, ["192.168.1.1", "192.168.1.2"]),
        ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]}}, ["1.1.1.1"]),
        ({"dnsPolicy": "None"}, []),
        (
            {"dnsConfig": {"nameservers": ["10.0.0.1", "10.96.0.10", "10.0.0.2", "10.0.0.3"]}},
            ["10.96.0.10", "10.0.0.1", "10.0.0.2"],
        ),
    ],
)
def test_resolvers_follow_the_dns_policy(spec: dict[str, Any], want: list[str]) -> None:
    assert node_redirect.resolvers({"spec": spec}, CLUSTER, NODE) == want


def test_host_network_and_unknown_policy_are_refused_with_the_field() -> None:
    with pytest.raises(node_redirect.NodeRedirectError) as e:
        node_redirect.resolvers({"spec": {"hostNetwork": True}}, CLUSTER, NODE)
    assert e.value.field == "spec.hostNetwork"
    with pytest.raises(node_redirect.NodeRedirectError) as e:
        node_redirect.resolvers({"spec": {"dnsPolicy": "Sometimes"}}, CLUSTER, NODE)
    assert e.value.field == "spec.dnsPolicy"


def test_apply_args_add_dns_or_none() -> None:
    assert node_redirect.apply_args(["--proxy-uid", "1"], ["10.96.0.10"]) == [
        "--proxy-uid",
        "1",
        "--dns",
        "10.96.0.10",
    ]
    assert node_redirect.apply_args(["--proxy-uid", "1"], []) == ["--proxy-uid", "1", "--no-dns"]


def test_template_rules_parse_like_the_cli_and_leave_its_help_alone() -> None:
    from click.testing import CliRunner

    from haltgate.cli.iptables import parse_apply_args
    from haltgate.cli.main import main

    args = node_redirect.template_apply_args(injection.InjectionConfig(), TEMPLATE)
    config, _, dry_run = parse_apply_args(node_redirect.apply_args(args, ["10.96.0.10"]))
    assert config.proxy_uid == 17337 and config.proxy_port == 17001 and not dry_run
    assert config.dns_servers == ("10.96.0.10",)
    assert set(config.protected_ports) == {17020, 17090, 8181, 8282, 17091}
    # Parsing did not replace the command's help option ("-h" comes from the CLI's group).
    res = CliRunner().invoke(main, ["iptables", "apply", "-h"])
    assert res.exit_code == 0, res.output
