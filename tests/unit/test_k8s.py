"""The Kubernetes manifests (deploy/k8s/): rendered from the code, valid against their schemas
(strictly: a field a schema does not name fails), and saying what the code says."""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from consumers.registry import CONSUMERS
from services.config import Settings
from services.topology import UNROUTED, partition_queue_name, policies, queue_name
from tests.harness import ROOT

K8S = ROOT / "deploy" / "k8s"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"k8s_{name}", K8S / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _load("render")
validate = _load("validate")


def documents() -> Iterator[dict[str, Any]]:
    for _, document in validate.manifests(K8S):
        yield document


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def test_the_committed_manifests_are_what_the_code_renders() -> None:
    for name, text in render.rendered().items():
        assert (K8S / name).read_text() == text, f"run python deploy/k8s/render.py ({name})"


def test_every_manifest_passes_its_schema() -> None:
    found = [p for d in documents() for p in validate.problems(d)]
    assert found == []
    kinds = {(d["apiVersion"], d["kind"]) for d in documents()}
    assert kinds == {*validate.CORE, *validate.CRDS, *validate.WRITTEN}  # each schema is used


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ("spec", "template", "spec", "containers", 0, "imagePullPolicyy"), "x"),
        ("PodDisruptionBudget", ("spec", "minAvailabel"), 1),
        ("ScaledObject", ("spec", "maxReplicaCount"), "four"),
        ("MongoDBCommunity", ("spec", "type"), "Sharded"),
        ("Policy", ("spec", "applyTo"), "queue"),
    ],
)
def test_a_wrong_field_fails_its_schema(kind: str, path: tuple[Any, ...], value: Any) -> None:
    document = copy.deepcopy(next(iter(of_kind(kind).values())))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert validate.problems(document)


def test_each_consumer_kind_runs_with_a_standby_and_scales_on_its_queues() -> None:
    deployments, budgets = of_kind("Deployment"), of_kind("PodDisruptionBudget")
    scaled = of_kind("ScaledObject")
    for name in [*CONSUMERS, UNROUTED]:
        deployment = deployments[f"consumer-{name}"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["consumer", name]
        assert deployment["spec"]["replicas"] >= 2  # one stands by
        assert budgets[f"consumer-{name}"]["spec"]["minAvailable"] == 1
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["BACKOFFICE_PARTITIONS"] == str(render.PARTITIONS)
    for name in CONSUMERS:
        spec = scaled[f"consumer-{name}"]["spec"]
        queues = [t["metadata"]["queueName"] for t in spec["triggers"]]
        partitions = [partition_queue_name(name, p) for p in range(render.PARTITIONS)]
        assert queues == [queue_name(name), *partitions]
        assert spec["maxReplicaCount"] == render.PARTITIONS  # more would only stand by


def test_the_api_is_probed_and_the_clock_is_one_replica_replaced_not_rolled() -> None:
    deployments = of_kind("Deployment")
    (api,) = deployments["api"]["spec"]["template"]["spec"]["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    clock = deployments["clock"]["spec"]
    assert clock["replicas"] == 1 and clock["strategy"] == {"type": "Recreate"}


def test_the_broker_gets_the_codes_policies_on_three_nodes_with_the_hash_exchange() -> None:
    (cluster,) = of_kind("RabbitmqCluster").values()
    assert cluster["spec"]["replicas"] == 3
    assert "rabbitmq_consistent_hash_exchange" in cluster["spec"]["rabbitmq"]["additionalPlugins"]
    made = {p.name: p for p in policies([*CONSUMERS, UNROUTED], Settings())}
    found = {d["spec"]["name"]: d["spec"] for d in of_kind("Policy").values()}
    assert set(found) == set(made)
    for name, policy in made.items():
        assert found[name]["definition"] == policy.definition
        assert found[name]["pattern"] == policy.pattern
    (database,) = of_kind("MongoDBCommunity").values()
    assert database["spec"]["members"] == 3
