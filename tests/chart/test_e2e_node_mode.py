"""e2e/run.sh against today's chart and CLI, without Docker: the script passes shellcheck,
every value it sets exists in the chart's values and schema, every object it names is one
the chart renders, every ``haltgate`` command it runs parses, and its node-mode journey
(``REDIRECT=node``) holds: the chart renders the node agent and node-mode injection, and the
sample agent's pod, injected as the operator would with the e2e values, is admitted by the
real kube-apiserver in a namespace enforcing Pod Security ``restricted``."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from typing import Any

import click
import pytest
import yaml

from haltgate.cli.main import main
from haltgate.operator import injection, injection_outcome, injection_template, pod_mutation
from haltgate.testbed.controlplane import ControlPlane
from tests.chart.conftest import CHART, KUBE_VERSION, REPO, Helm

E2E = REPO / "e2e"
SCRIPT = (E2E / "run.sh").read_text()
RELEASE, RELEASE_NS, AGENT_NS = "haltgate", "haltgate-system", "e2e-agents"


def _mode_args(mode: str) -> list[str]:
    """The helm arguments the script adds for ``REDIRECT=<mode>`` (its case statement)."""
    match = re.search(rf"^\s*{mode}\) MODE_ARGS=\((.*?)\) ;;$", SCRIPT, re.M)
    assert match, f"no MODE_ARGS for REDIRECT={mode} in e2e/run.sh"
    return shlex.split(match.group(1))


def _set_keys(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args[1::2] if args[args.index(a) - 1] == "--set")


def test_script_passes_shellcheck() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed: `make deps` installs it")
    res = subprocess.run(
        [exe, str(E2E / "run.sh")], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_node_mode_sets_values_the_chart_has() -> None:
    args = _mode_args("node")
    assert _set_keys(args) == {"nodeAgent.enabled": "true", "injection.redirect": "node"}
    assert _mode_args("init") == []
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    for key, value in _set_keys(args).items():
        node, props = values, schema
        for part in key.split("."):
            assert part in node, f"e2e/run.sh sets {key}: no {part!r} in values.yaml"
            assert part in props["properties"], f"e2e/run.sh sets {key}: not in the schema"
            node, props = node[part], props["properties"][part]
        allowed = props.get("enum")
        assert allowed is None or value in allowed, (key, value, allowed)


def _render(helm: Helm, *extra: str) -> list[dict[str, Any]]:
    out = helm(
        "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--kube-version",
        KUBE_VERSION, "-f", str(E2E / "values.yaml"), *extra,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def test_objects_the_script_names_are_rendered(helm: Helm) -> None:
    docs = _render(helm, *_mode_args("node"))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    short = {"deploy": "Deployment", "ds": "DaemonSet", "secret": "Secret"}
    named = re.findall(r'-n "\$RELEASE_NS" \S+ (deploy|ds)/([a-z0-9-]+)', SCRIPT)
    named += re.findall(r"get (secret) ([a-z0-9-]+)", SCRIPT)
    assert ("ds", "haltgate-node-agent") in named and ("deploy", "haltgate-operator") in named
    for kind, name in named:
        assert (short[kind], name) in names, f"e2e/run.sh names {kind}/{name}: not rendered"
    # The operator writes the injector configuration the script waits for, by this name.
    assert "mutatingwebhookconfiguration/haltgate-injector" in SCRIPT
    from haltgate.operator import webhookconfig

    assert "haltgate-injector" in json.dumps(
        {k: v for k, v in vars(webhookconfig).items() if isinstance(v, str)}
    )
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith(
        "-injection"))  # fmt: skip
    raw = yaml.safe_load(cm["data"]["injection-config.yaml"])
    assert injection.InjectionConfig.from_mapping(raw).redirect == "node"


def test_haltgate_commands_of_the_script_parse() -> None:
    """Every ``haltgate <command>`` the script runs (not its comments, not the release name
    in ``helm install haltgate charts/...``) names a real command, with real options."""
    code = "\n".join(line for line in SCRIPT.splitlines() if not line.lstrip().startswith("#"))
    top = set(main.list_commands(click.Context(main)))
    found = []
    for words, options in re.findall(
        r"\bhaltgate ((?:[a-z]+ )*[a-z]+)((?: --[a-z-]+(?: [^-&'\s]\S*)?)*)", code
    ):
        if words.split()[0] not in top:
            continue  # the release name, not the CLI
        cmd: click.Command = main
        for word in words.split():
            if not isinstance(cmd, click.Group):
                break  # a positional argument
            sub = cmd.get_command(click.Context(cmd), word)
            assert sub is not None, f"e2e/run.sh runs `haltgate {words}`: no {word!r}"
            cmd = sub
        known = {o for p in cmd.params for o in p.opts}
        for option in re.findall(r"--[a-z-]+", options):
            assert option in known, f"e2e/run.sh: `haltgate {words}` has no {option}"
        found.append(words)
    assert found == ["audit ship", "audit cost", "audit query", "audit verify"], found


def _e2e_agent_pod(config: injection.InjectionConfig) -> dict[str, Any]:
    """The e2e Deployment's pod, injected as the operator does with the rendered config."""
    deploy = yaml.safe_load((E2E / "manifests" / "agent.yaml").read_text())
    template = deploy["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "researcher", "namespace": AGENT_NS},
        "spec": template["spec"],
    }
    out = pod_mutation.mutate_pod(
        pod,
        namespace=AGENT_NS,
        namespace_labels={},
        policies=[
            injection_outcome.PolicyRef(
                name="researcher", generation=1, selector={"matchLabels": {"app": "researcher"}}
            )
        ],
        config=config,
        template=injection_template.InjectionTemplate.load(
            injection_template.default_template_path()
        ),
    )
    assert isinstance(out, injection_outcome.Inject), out
    return out.pod


def test_node_mode_agent_pod_is_admitted_under_restricted_and_init_mode_is_not(
    kube: ControlPlane, helm: Helm
) -> None:
    kube.kubectl("create", "namespace", AGENT_NS)
    res = kube.kubectl(
        "label", "namespace", AGENT_NS, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    verdicts = {}
    for mode in ("node", "init"):
        docs = _render(helm, *_mode_args(mode))
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith(
            "-injection"))  # fmt: skip
        config = injection.InjectionConfig.from_mapping(
            yaml.safe_load(cm["data"]["injection-config.yaml"])
        )
        pod = _e2e_agent_pod(config)
        res = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))
        verdicts[mode] = (res.returncode, res.stderr)
        if mode == "node":
            inits = [c["name"] for c in pod["spec"]["initContainers"]]
            assert inits == [injection.SIDECAR_CONTAINER_NAME, injection.VERIFY_CONTAINER_NAME]
            assert all(c["image"] == "haltgate:e2e" for c in pod["spec"]["initContainers"])
    assert verdicts["node"][0] == 0, verdicts["node"][1]
    assert verdicts["init"][0] != 0 and "violates PodSecurity" in verdicts["init"][1], verdicts
