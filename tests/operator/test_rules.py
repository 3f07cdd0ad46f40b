"""Unit tests of the opt-in rules, the refusal rules, selectors, config and template checks."""

from __future__ import annotations

import pytest

from haltgate.operator import injection, injection_template, pod_mutation, refusals, selectors

RESERVED = dict(reserved_containers=injection.CONTAINER_NAMES, reserved_volumes=frozenset())


def pod(annotations: dict[str, str] | None = None, **spec: object) -> dict[str, object]:
    spec.setdefault("containers", [{"name": "agent", "image": "x"}])
    return {"metadata": {"annotations": annotations or {}}, "spec": spec}


@pytest.mark.parametrize(
    ("annotation", "ns_label", "expected"),
    [
        (None, None, False),
        ("true", None, True),
        ("TRUE", None, True),
        (None, "enabled", True),
        ("false", "enabled", False),  # explicit false on the pod wins
        ("true", "disabled", False),  # explicit disabled on the namespace wins
        ("yes", None, False),  # only "true" opts in
    ],
)
def test_injection_requested(annotation: str | None, ns_label: str | None, expected: bool) -> None:
    ann = {injection.ANNOTATION_INJECT: annotation} if annotation else {}
    labels = {injection.LABEL_NAMESPACE_INJECTION: ns_label} if ns_label else {}
    assert pod_mutation.injection_requested(pod(ann), labels) is expected


def codes(p: dict[str, object], uid: int = 17337) -> list[str]:
    return [r.code for r in refusals.refusals(p, proxy_uid=uid, **RESERVED)]


def test_clean_pod_has_no_refusal() -> None:
    assert codes(pod(securityContext={"runAsUser": 1000})) == []


def test_container_uid_overrides_pod_uid() -> None:
    p = pod(
        securityContext={"runAsUser": 17337},
        containers=[{"name": "a", "securityContext": {"runAsUser": 1000}}],
    )
    assert codes(p) == []
    p = pod(
        securityContext={"runAsUser": 1000},
        containers=[{"name": "a", "securityContext": {"runAsUser": 17337}}],
    )
    assert codes(p) == ["agent_runs_as_proxy_uid"]


def test_proxy_uid_is_configurable() -> None:
    p = pod(containers=[{"name": "a", "securityContext": {"runAsUser": 4242}}])
    assert codes(p, uid=4242) == ["agent_runs_as_proxy_uid"]
    assert codes(p, uid=17337) == []


@pytest.mark.parametrize("cap", ["NET_ADMIN", "net_raw", "CAP_NET_ADMIN", "ALL"])
def test_net_capabilities_refused(cap: str) -> None:
    p = pod(containers=[{"name": "a", "securityContext": {"capabilities": {"add": [cap]}}}])
    assert codes(p) == ["agent_net_capability"]


def test_other_capabilities_allowed() -> None:
    p = pod(
        containers=[
            {"name": "a", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}}
        ]
    )
    assert codes(p) == []


def test_every_problem_is_reported() -> None:
    p = pod(
        hostNetwork=True,
        hostPID=True,
        shareProcessNamespace=True,
        containers=[{"name": "haltgate-proxy", "securityContext": {"privileged": True}}],
    )
    assert codes(p) == [
        "host_network",
        "host_pid",
        "share_process_namespace",
        "name_conflict",
        "agent_privileged",
    ]


def test_group_and_supplemental_group_refused() -> None:
    assert codes(pod(securityContext={"runAsGroup": 17337})) == ["agent_runs_as_proxy_uid"]
    assert codes(pod(securityContext={"supplementalGroups": [5, 17337]})) == [
        "agent_runs_as_proxy_uid"
    ]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "a", "x": "y"}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "b"}, False),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
            {"app": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}, {"app": "a"}, False),
    ],
)
def test_selectors(selector: dict[str, object], labels: dict[str, str], expected: bool) -> None:
    assert selectors.matches(selector, labels) is expected


def test_selector_query() -> None:
    q = selectors.to_query(
        {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [
                {"key": "t", "operator": "In", "values": ["y", "x"]},
                {"key": "n", "operator": "DoesNotExist"},
            ],
        }
    )
    assert q == "a=1,b=2,t in (x,y),!n"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"proxy_uid": 0}, "never root"),
        ({"opa_uid": 17337}, "must differ"),
        ({"admin_port": 17000}, "distinct"),
        ({"metrics_port": 70000}, "1..65535"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        injection.InjectionConfig(**kwargs)


def test_config_from_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        injection.InjectionConfig.from_mapping({"proxyUid": 1})
    cfg = injection.InjectionConfig.from_mapping({"proxyUID": 2000, "excludedNamespaces": ["x"]})
    assert cfg.proxy_uid == 2000 and cfg.excluded("x") and cfg.excluded("kube-system")


def test_template_unknown_placeholder_fails_at_load() -> None:
    text = (
        injection_template.default_template_path()
        .read_text()
        .replace("{{ .image }}", "{{ .imageTypo }}", 1)
    )
    with pytest.raises(injection_template.TemplateError, match=r"unknown name \.imageTypo"):
        injection_template.InjectionTemplate.from_text(text)


def test_template_typed_values() -> None:
    tpl = injection_template.InjectionTemplate.load(injection_template.default_template_path())
    out = tpl.render(
        injection.InjectionConfig(proxy_uid=2000).template_values(policy="p", mode="explicit")
    )
    assert out["sidecar"]["securityContext"]["runAsUser"] == 2000
    assert "2000" in out["initContainer"]["args"]
