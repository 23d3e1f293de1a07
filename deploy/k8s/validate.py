"""Checks the manifests in deploy/k8s/ against schemas, strictly (as kubeconform's -strict does:
a field the schema does not name is an error, so a misspelt field fails).

- Deployments, Services, PodDisruptionBudgets: Kubernetes' OpenAPI v3 documents (k8s.io/kubernetes
  v1.34, api/openapi-spec/v3).
- ScaledObject, TriggerAuthentication: KEDA's CRDs (v2.21); MongoDBCommunity: the MongoDB
  community operator's CRD (v0.9).
- RabbitmqCluster and the topology operator's Policy: the Go module proxy serves neither
  operator, so the fields used are checked against the schemas below, written from the
  operators' API references (rabbitmq.com/v1beta1).

deploy/k8s/schemas.sh fetches the modules. ``python deploy/k8s/validate.py`` prints each
problem and exits 1 if there is one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import yaml

HERE = Path(__file__).resolve().parent
KUBERNETES: Final = "k8s.io/kubernetes@v1.34.4/api/openapi-spec/v3"
KEDA: Final = "github.com/kedacore/keda/v2@v2.21.0/config/crd/bases"
MONGODB: Final = "github.com/mongodb/mongodb-kubernetes-operator@v0.9.0/config/crd/bases"
CORE: Final = {  # (apiVersion, kind) -> (OpenAPI document, component)
    ("apps/v1", "Deployment"): ("apis__apps__v1_openapi.json", "io.k8s.api.apps.v1.Deployment"),
    ("v1", "Service"): ("api__v1_openapi.json", "io.k8s.api.core.v1.Service"),
    ("policy/v1", "PodDisruptionBudget"): (
        "apis__policy__v1_openapi.json",
        "io.k8s.api.policy.v1.PodDisruptionBudget",
    ),
}
CRDS: Final = {  # (apiVersion, kind) -> CRD file
    ("keda.sh/v1alpha1", "ScaledObject"): f"{KEDA}/keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): f"{KEDA}/keda.sh_triggerauthentications.yaml",
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"): (
        f"{MONGODB}/mongodbcommunity.mongodb.com_mongodbcommunity.yaml"
    ),
}
_METADATA: Final = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
    "additionalProperties": False,
}
_REFERENCE: Final = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
    "additionalProperties": False,
}
WRITTEN: Final = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "rabbitmq.com/v1beta1"},
            "kind": {"const": "RabbitmqCluster"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0},
                    "image": {"type": "string"},
                    "rabbitmq": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "additionalPlugins": {"type": "array", "items": {"type": "string"}},
                            "additionalConfig": {"type": "string"},
                            "advancedConfig": {"type": "string"},
                        },
                    },
                    "resources": {"type": "object"},
                    "persistence": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "storage": {"type": "string"},
                            "storageClassName": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    ("rabbitmq.com/v1beta1", "Policy"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "rabbitmq.com/v1beta1"},
            "kind": {"const": "Policy"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["name", "pattern", "definition", "rabbitmqClusterReference"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "vhost": {"type": "string"},
                    "pattern": {"type": "string"},
                    "applyTo": {"enum": ["queues", "exchanges", "all"]},
                    "priority": {"type": "integer"},
                    "definition": {"type": "object"},
                    "rabbitmqClusterReference": _REFERENCE,
                },
            },
        },
    },
}


@cache
def _modules() -> Path:
    found = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(found)


def _strict(schema: Any) -> Any:
    """``schema`` with every object that names its properties closed to others."""
    if isinstance(schema, dict):
        closed = {k: _strict(v) for k, v in schema.items()}
        named = "properties" in closed and "additionalProperties" not in closed
        if named and not closed.get("x-kubernetes-preserve-unknown-fields"):
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _openapi(document: str) -> dict[str, Any]:
    return json.loads((_modules() / KUBERNETES / document).read_text())


@cache
def validator(api_version: str, kind: str) -> Any:
    if (api_version, kind) in CORE:
        document, component = CORE[(api_version, kind)]
        components = _strict(_openapi(document)["components"])
        schema = {"$ref": f"#/components/schemas/{component}", "components": components}
    elif (api_version, kind) in CRDS:
        crd = yaml.safe_load((_modules() / CRDS[(api_version, kind)]).read_text())
        version = api_version.split("/")[1]
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = _strict(served["schema"]["openAPIV3Schema"])
        schema.setdefault("properties", {})["metadata"] = _METADATA
    elif (api_version, kind) in WRITTEN:
        schema = WRITTEN[(api_version, kind)]
    else:
        raise KeyError(f"no schema for {api_version} {kind}")
    return jsonschema_rs.validator_for(schema)


def problems(document: dict[str, Any]) -> list[str]:
    """What is wrong with one manifest; empty when nothing is."""
    kind = f"{document.get('apiVersion')} {document.get('kind')}"
    name = (document.get("metadata") or {}).get("name", "?")
    try:
        check = validator(str(document.get("apiVersion")), str(document.get("kind")))
    except KeyError as error:
        return [f"{name}: {error.args[0]}"]
    return [
        f"{kind} {name}: {'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in check.iter_errors(document)
    ]


def manifests(folder: Path = HERE) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def main() -> int:
    found = [f"{file}: {p}" for file, doc in manifests() for p in problems(doc)]
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
