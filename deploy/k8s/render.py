"""Writes the Kubernetes manifests in deploy/k8s/ from the code: one Deployment and KEDA
ScaledObject per consumer kind (its queues are the code's), the API and the clock, the broker's
policies as the topology operator's Policy objects (the code's policies), RabbitMQ through its
cluster operator and MongoDB as a replica set through the MongoDB community operator.

    python deploy/k8s/render.py           # writes deploy/k8s/*.yaml
    python deploy/k8s/render.py --check   # exits 1 when a committed file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from consumers.registry import CONSUMERS  # noqa: E402
from services.config import Settings  # noqa: E402
from services.topology import (  # noqa: E402
    UNROUTED,
    partition_queue_name,
    policies,
    queue_name,
)

HERE = Path(__file__).resolve().parent
NAMESPACE: Final = "backoffice"
IMAGE: Final = "backoffice:1.0"  # built from the repository's Dockerfile
PARTITIONS: Final = 4  # BACKOFFICE_PARTITIONS: at most this many replicas of a kind work at once
LABEL: Final = "app.kubernetes.io/name"
RABBIT: Final = "backoffice-rabbitmq"  # the RabbitmqCluster
MONGO: Final = "backoffice-mongo"  # the MongoDBCommunity replica set
SECRETS: Final = "backoffice-secrets"  # made by the operator of the cluster, never committed


def _env() -> list[dict[str, Any]]:
    def secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRETS, "key": key}}}

    return [
        secret("BACKOFFICE_AMQP_URL", "amqp-url"),
        secret("BACKOFFICE_MONGO_URL", "mongo-url"),  # with w=majority: a replica set
        secret("BACKOFFICE_SERVICE_SECRET", "service-secret"),
        {"name": "BACKOFFICE_PARTITIONS", "value": str(PARTITIONS)},
        {"name": "BACKOFFICE_LOG_FORMAT", "value": "json"},
    ]


def _pod(name: str, args: list[str], probes: dict[str, Any], resources: dict[str, Any]) -> Any:
    container = {
        "name": name,
        "image": IMAGE,
        "args": args,
        "env": _env(),
        "resources": resources,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
        },
        **probes,
    }
    return {
        "metadata": {"labels": {LABEL: name}},
        "spec": {
            # A consumer acks only after its write; SIGTERM lets it finish its batch.
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
        },
    }


def _deployment(
    name: str, args: list[str], replicas: int, probes: dict[str, Any], resources: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL: name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {LABEL: name}},
            "template": _pod(name, args, probes, resources),
        },
    }


def _pdb(name: str, min_available: int) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {LABEL: name}}},
    }


# A consumer has no HTTP port: `health` exits 0 while the broker and the database answer.
HEALTH: Final = {"exec": {"command": ["python", "-m", "services", "health"]}}
CONSUMER_PROBES: Final = {
    "livenessProbe": {**HEALTH, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 4},
    "readinessProbe": {**HEALTH, "periodSeconds": 15, "timeoutSeconds": 10},
}
CONSUMER_RESOURCES: Final = {
    "requests": {"cpu": "250m", "memory": "192Mi"},
    "limits": {"memory": "512Mi"},
}


def consumers() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name in [*CONSUMERS, UNROUTED]:
        deployment = f"consumer-{name}"
        found.append(
            _deployment(deployment, ["consumer", name], 2, CONSUMER_PROBES, CONSUMER_RESOURCES)
        )
        found.append(_pdb(deployment, 1))
        if name == UNROUTED:
            continue  # a catch-all: one active, one standing by
        queues = [queue_name(name), *(partition_queue_name(name, p) for p in range(PARTITIONS))]
        found.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": deployment, "namespace": NAMESPACE},
                "spec": {
                    "scaleTargetRef": {"name": deployment},
                    # Two keep a standby; more than P replicas would only stand by too.
                    "minReplicaCount": 2,
                    "maxReplicaCount": PARTITIONS,
                    "cooldownPeriod": 300,
                    "triggers": [
                        {
                            "type": "rabbitmq",
                            "metadata": {
                                "protocol": "amqp",
                                "queueName": queue,
                                "mode": "QueueLength",
                                "value": "2000",
                            },
                            "authenticationRef": {"name": "backoffice-rabbitmq"},
                        }
                        for queue in queues
                    ],
                },
            }
        )
    found.append(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": {"name": "backoffice-rabbitmq", "namespace": NAMESPACE},
            "spec": {
                "secretTargetRef": [{"parameter": "host", "name": SECRETS, "key": "amqp-url"}]
            },
        }
    )
    return found


def api() -> list[dict[str, Any]]:
    http = {"httpGet": {"path": "/healthz", "port": 8000}}
    probes = {
        "ports": [{"name": "http", "containerPort": 8000}],
        "livenessProbe": {**http, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8000}, "periodSeconds": 5},
    }
    resources = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    deployment = _deployment("api", ["api"], 2, probes, resources)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["env"] += [
        {"name": "BACKOFFICE_API_HOST", "value": "0.0.0.0"},
        {
            "name": "BACKOFFICE_JWT_SECRET",
            "valueFrom": {"secretKeyRef": {"name": SECRETS, "key": "jwt-secret"}},
        },
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": NAMESPACE},
        "spec": {
            "selector": {LABEL: "api"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    return [deployment, service, _pdb("api", 1)]


def clock() -> list[dict[str, Any]]:
    """One replica, replaced rather than rolled (Recreate): two clocks for a moment would only
    tick twice, which every consumer absorbs, so no leader election is needed."""
    resources = {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "192Mi"}}
    deployment = _deployment("clock", ["clock"], 1, CONSUMER_PROBES, resources)
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    return [deployment]


def broker() -> list[dict[str, Any]]:
    cluster = {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": "RabbitmqCluster",
        "metadata": {"name": RABBIT, "namespace": NAMESPACE},
        "spec": {
            "replicas": 3,  # quorum queues keep a majority of three
            "rabbitmq": {
                "additionalPlugins": ["rabbitmq_consistent_hash_exchange"],
                "additionalConfig": "consumer_timeout = 1800000\n",
            },
            "resources": {
                "requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"memory": "2Gi"},
            },
            "persistence": {"storage": "20Gi"},
        },
    }
    found = [cluster]
    for policy in policies([*CONSUMERS, UNROUTED], Settings()):
        found.append(
            {
                "apiVersion": "rabbitmq.com/v1beta1",
                "kind": "Policy",
                "metadata": {
                    "name": policy.name.replace(".", "-"),
                    "namespace": NAMESPACE,
                },
                "spec": {
                    "name": policy.name,
                    "vhost": "/",
                    "pattern": policy.pattern,
                    "applyTo": policy.apply_to,
                    "priority": policy.priority,
                    "definition": policy.definition,
                    "rabbitmqClusterReference": {"name": RABBIT},
                },
            }
        )
    return found


def database() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "mongodbcommunity.mongodb.com/v1",
            "kind": "MongoDBCommunity",
            "metadata": {"name": MONGO, "namespace": NAMESPACE},
            "spec": {
                "members": 3,
                "type": "ReplicaSet",
                "version": "7.0.14",
                "security": {"authentication": {"modes": ["SCRAM"]}},
                "users": [
                    {
                        "name": "backoffice",
                        "db": "admin",
                        "passwordSecretRef": {"name": SECRETS, "key": "mongo-password"},
                        "roles": [{"name": "readWrite", "db": "backoffice"}],
                        "scramCredentialsSecretName": "backoffice-scram",
                    }
                ],
            },
        }
    ]


FILES: Final = {
    "consumers.yaml": consumers,
    "api.yaml": api,
    "clock.yaml": clock,
    "rabbitmq.yaml": broker,
    "mongodb.yaml": database,
}
HEADER: Final = "# Written by deploy/k8s/render.py from the code; edit that, not this.\n"


def rendered() -> dict[str, str]:
    return {
        name: HEADER + yaml.safe_dump_all(make(), sort_keys=False, width=100)
        for name, make in FILES.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for name, text in rendered().items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python deploy/k8s/render.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
