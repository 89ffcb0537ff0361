"""Regenerate inferenceservice_v1beta1.json from KServe's published Python SDK (PyPI `kserve`), whose models are
generated from KServe's OpenAPI definitions (the Go types behind the InferenceService CRD).

    pip download --no-deps kserve==0.21.0 -d /tmp/kserve && unzip -q /tmp/kserve/*.whl -d /tmp/kserve/x
    python tests/deploy/data/schemas/make_inferenceservice_schema.py /tmp/kserve/x/kserve/models

The SDK is read as text (ast), not imported (it needs cloudevents, grpc, ...). KServe's own types become strict JSON
Schema objects (additionalProperties: false; required = the attributes the SDK refuses as None); Kubernetes core types
(V1Container, V1ResourceRequirements, ...) become $refs into kubernetes-validate's strict definitions, resolved by the
test. `status` is written by the controller and left open."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

K8S = {"V1ObjectMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
           "bool": {"type": "boolean"}, "object": {}, "datetime": {"type": "string"},
           # referenced by the SDK but not generated in it: a resource.Quantity (int or string)
           "V1beta1MetricQuantity": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "string"}]},
           "ResourceQuantity": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "string"}]}}


def read_model(models: Path, cls: str) -> tuple[dict, dict, list[str]]:
    files = [p for p in sorted(models.glob("*.py")) if f"class {cls}(" in p.read_text()]
    if not files:
        raise SystemExit(f"no model file defines {cls}")
    text = files[0].read_text()
    tree = ast.parse(text)
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("openapi_types", "attribute_map"):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    required = re.findall(r"Invalid value for `(\w+)`, must not be `None`", text)
    return found["openapi_types"], found["attribute_map"], required


def type_schema(t: str, models: Path, defs: dict) -> dict:
    if t in SCALARS:
        return dict(SCALARS[t])
    if t.startswith("list["):
        return {"type": "array", "items": type_schema(t[5:-1], models, defs)}
    if t.startswith("dict("):
        value = t[5:-1].split(",", 1)[1].strip()
        return {"type": "object", "additionalProperties": type_schema(value, models, defs)}
    if t.startswith(("V1beta1", "V1alpha1")):
        if t not in defs:
            defs[t] = None
            defs[t] = object_schema(t, models, defs)
        return {"$ref": f"#/$defs/{t}"}
    if t in K8S:
        return {"$ref": f"/api/_definitions.json#/$defs/{K8S[t]}"}
    if t.startswith("K8sIoApi"):  # e.g. K8sIoApiAppsV1DeploymentStrategy -> io.k8s.api.apps.v1.DeploymentStrategy
        group, version, kind = re.match(r"K8sIoApi([A-Z][a-z]+)(V\d\w*?)([A-Z]\w+)$", t).groups()
        return {"$ref": f"/api/_definitions.json#/$defs/io.k8s.api.{group.lower()}.{version.lower()}.{kind}"}
    if t in ("V1Time",):
        return {"type": "string"}
    if t.startswith("V1"):
        return {"$ref": f"/api/_definitions.json#/$defs/io.k8s.api.core.v1.{t[2:]}"}
    if t.startswith("Knative"):
        return {}
    raise SystemExit(f"unknown type {t}")


def object_schema(cls: str, models: Path, defs: dict) -> dict:
    types, names, required = read_model(models, cls)
    props = {names[k]: type_schema(v, models, defs) for k, v in types.items()}
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = [names[k] for k in required]
    return out


def main(models: Path) -> None:
    defs: dict = {}
    spec = type_schema("V1beta1InferenceServiceSpec", models, defs)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              # resolves "/api/_definitions.json" to kubernetes-validate's strict Kubernetes definitions
              "$id": "https://kubernetes.io/api/inferenceservice-serving.kserve.io-v1beta1.json",
              "$comment": "InferenceService serving.kserve.io/v1beta1 from kserve==0.21.0 (PyPI) models; see "
                          "make_inferenceservice_schema.py", "type": "object",
              "properties": {"apiVersion": {"const": "serving.kserve.io/v1beta1"},
                             "kind": {"const": "InferenceService"},
                             "metadata": {"$ref": f"/api/_definitions.json#/$defs/{K8S['V1ObjectMeta']}"},
                             "spec": spec, "status": {"type": "object"}},
              "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
              "$defs": {k: defs[k] for k in sorted(defs)}}
    out = Path(__file__).with_name("inferenceservice_v1beta1.json")
    out.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")
    print(f"wrote {out} ({len(defs)} KServe types)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
