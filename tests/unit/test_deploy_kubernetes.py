"""The Kubernetes manifests of examples/kubernetes/, checked without a cluster against what the worker accepts:
its command line, its probe paths and port, its shutdown grace, the settings it reads, the image's user."""

from __future__ import annotations

from typing import Any

import pytest

import stream_logger
from tests.deploy import DOCKERFILE, KUBERNETES, consume_env_vars, load_yaml, parse_command, parse_dockerfile

MANIFESTS = {path.name: load_yaml(path) for path in sorted(KUBERNETES.glob("*.yaml"))}
BY_KIND = {doc["kind"]: doc for docs in MANIFESTS.values() for doc in docs}


def container() -> dict[str, Any]:
    (worker,) = BY_KIND["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(worker, dict)
    return worker


def test_each_manifest_is_one_named_object() -> None:
    assert set(MANIFESTS) == {"configmap.yaml", "secret.yaml", "deployment.yaml", "service.yaml"}
    for name, docs in MANIFESTS.items():
        assert len(docs) == 1, name
        (doc,) = docs
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], name
    assert set(BY_KIND) == {"ConfigMap", "Secret", "Deployment", "Service"}


def test_the_container_runs_consume_and_probes_it_on_its_metrics_port() -> None:
    worker = container()
    args = parse_command(worker["args"])
    assert args.command == "consume"
    (port,) = worker["ports"]
    assert port["containerPort"] == args.metrics_port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = worker[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in (port["name"], port["containerPort"]), probe


def test_the_grace_period_outlasts_the_workers_own() -> None:
    pod = BY_KIND["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > parse_command(container()["args"]).shutdown_grace_s


def test_settings_come_from_the_configmap_and_the_secret_and_are_ones_the_code_reads() -> None:
    sources = container()["envFrom"]
    assert {"configMapRef": {"name": BY_KIND["ConfigMap"]["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": BY_KIND["Secret"]["metadata"]["name"]}} in sources
    config, secret = BY_KIND["ConfigMap"]["data"], BY_KIND["Secret"]["stringData"]
    assert set(config) | set(secret) <= consume_env_vars()
    assert "STREAM_LOGGER_DSN" in secret and "STREAM_LOGGER_DSN" not in config  # it holds a password
    assert "STREAM_LOGGER_BOOTSTRAP_SERVERS" in config
    assert "CHANGE-ME" in secret["STREAM_LOGGER_DSN"]  # a placeholder, never a real password


def test_the_pod_runs_as_the_images_non_root_user() -> None:
    (user,) = [i.arguments for i in parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")) if i.keyword == "USER"]
    security = BY_KIND["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == user
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False
    assert container()["image"] == f"stream-logger:{stream_logger.__version__}"


@pytest.mark.parametrize("kind", ["Deployment", "Service"])
def test_the_deployment_and_the_service_select_the_worker_pods(kind: str) -> None:
    spec = BY_KIND[kind]["spec"]
    selector = spec["selector"]["matchLabels"] if kind == "Deployment" else spec["selector"]
    labels = BY_KIND["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    if kind == "Service":
        (port,) = spec["ports"]
        assert port["targetPort"] == container()["ports"][0]["name"]
