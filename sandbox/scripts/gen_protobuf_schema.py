#!/usr/bin/env python3
"""Generates sandbox/src/api/protobuf/schema.json: the wire schema of Kubernetes' built-in types.

kubectl (1.32+) sends built-in objects as Kubernetes protobuf. The sandbox decodes them
generically with this table: for each message, its fields by tag with JSON name and type.
Field tags and types come from the prost attributes of the `k8s-pb` crate (generated from
Kubernetes' .proto files); JSON names come from `k8s-openapi`'s serde field names (so
`pod_ip` becomes `podIP`, not `podIp`). Run after `cargo fetch` with both crates in the
registry:  python3 sandbox/scripts/gen_protobuf_schema.py
"""
import glob
import json
import os
import re

REGISTRY = os.path.expanduser("~/.cargo/registry/src")
PB = sorted(glob.glob(f"{REGISTRY}/*/k8s-pb-0.9.*"))[-1] + "/src"
OPENAPI = sorted(glob.glob(f"{REGISTRY}/*/k8s-openapi-0.29.*"))[-1] + "/src/v1_33"
OUT = os.path.join(os.path.dirname(__file__), "..", "src", "api", "protobuf", "schema.json")

# Packages kubectl's typed clients write (plus what they reference).
PACKAGES = [
    "api/core/v1", "api/apps/v1", "api/batch/v1", "api/rbac/v1", "api/authorization/v1",
    "api/authentication/v1", "api/autoscaling/v1", "api/autoscaling/v2", "api/coordination/v1",
    "api/policy/v1", "api/networking/v1", "api/events/v1", "api/scheduling/v1",
    "apimachinery/pkg/apis/meta/v1", "apimachinery/pkg/api/resource", "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime", "apiextensions_apiserver/pkg/apis/apiextensions/v1",
    "kube_aggregator/pkg/apis/apiregistration/v1",
]

json_names = {}
for path in glob.glob(f"{OPENAPI}/**/*.rs", recursive=True):
    for json_name, rust in re.findall(r'"(\w+)" => Field::Key_(\w+),', open(path).read()):
        json_names.setdefault(rust, json_name)


def camel(rust):
    if rust in json_names:
        return json_names[rust]
    head, *rest = rust.rstrip("_").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def proto_name(module):
    return "k8s.io." + ".".join(module)


def resolve(current, rust_type):
    rust_type = rust_type.strip()
    parts = rust_type.split("::")
    if parts[0] != "super":
        return proto_name(current + [p for p in parts[:-1]]) + "." + parts[-1]
    module = list(current)
    while parts and parts[0] == "super":
        module.pop()
        parts.pop(0)
    return proto_name(module + parts[:-1]) + "." + parts[-1]


FIELD = re.compile(r'#\[prost\(([^)]*)\)\]\s*pub (?:r#)?(\w+):(.*?),\s*(?=///|#\[|$)', re.S)
STRUCT = re.compile(r'pub struct (\w+) \{(.*?)\n\}', re.S)
schema = {}
for package in PACKAGES:
    module = package.split("/")
    source = open(f"{PB}/{package}/mod.rs").read()
    for name, body in STRUCT.findall(source):
        fields = {}
        for attrs, rust_field, rust_type in FIELD.findall(body):
            tag = re.search(r'tag = "(\d+)"', attrs).group(1)
            kind = attrs.split(",")[0].strip()
            label = "repeated" if "repeated" in attrs else "optional"
            rust_type = re.sub(r"\s+", "", rust_type)
            inner = re.sub(r"^(::core::option::Option|::prost::alloc::vec::Vec|Option|Vec)<(.*)>$", r"\2", rust_type.strip())
            entry = {"name": camel(rust_field), "label": label}
            map_kind = re.search(r'map = "(\w+), (\w+)"', attrs)
            if map_kind:
                value = map_kind.group(2)
                entry["kind"] = "map"
                entry["value"] = value
                if value == "message":
                    entry["type"] = resolve(module, rust_type.split(",", 1)[1][:-1].rstrip(","))
            elif kind == "message":
                entry["kind"] = "message"
                entry["type"] = resolve(module, inner)
            else:
                entry["kind"] = kind.split("=")[0].strip()
            fields[tag] = entry
        schema[proto_name(module) + "." + name] = fields

with open(OUT, "w") as f:
    json.dump(schema, f, separators=(",", ":"), sort_keys=True)
print(f"{len(schema)} messages -> {OUT}")
