//! OpenAPI v3 documents, just enough for kubectl.
//!
//! kubectl decides between server-side and client-side validation by looking, in the OpenAPI v3
//! document of an object's group-version, for a PATCH operation tagged with the object's
//! `x-kubernetes-group-version-kind` that accepts the `fieldValidation` query parameter. The
//! sandbox publishes exactly that for every served resource, so kubectl validates server-side
//! (where the CRD schema lives) and never needs the protobuf OpenAPI v2 document, which is
//! therefore answered with 404 ("not served"), as kubectl tolerates. Custom resources also get
//! their CRD schema under `components.schemas`, which is what `kubectl explain` reads; built-in
//! kinds get none. No PATCH operation advertises strategic merge, so kubectl uses its compiled-in
//! types for built-in kinds and merge patches for custom resources.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::store::{ResourceInfo, Store};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions(store: &Store) -> Vec<(String, String, Vec<std::sync::Arc<ResourceInfo>>)> {
    let mut out: Vec<(String, String, Vec<std::sync::Arc<ResourceInfo>>)> = vec![];
    for info in store.registry().all() {
        for version in &info.versions {
            match out
                .iter_mut()
                .find(|(g, v, _)| *g == info.group && v == version)
            {
                Some((_, _, infos)) => infos.push(info.clone()),
                None => out.push((info.group.clone(), version.clone(), vec![info.clone()])),
            }
        }
    }
    out
}

fn hash(infos: &[std::sync::Arc<ResourceInfo>]) -> String {
    let mut h = DefaultHasher::new();
    for i in infos {
        (&i.plural, &i.kind, i.namespaced).hash(&mut h);
    }
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: one entry per served group-version.
pub fn v3_index(store: &Store) -> Value {
    let paths: Map<String, Value> = group_versions(store)
        .iter()
        .map(|(g, v, infos)| {
            let path = gv_path(g, v);
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash(infos))}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1|apis/g/v>`: PATCH operations advertising `fieldValidation`.
pub fn v3_document(store: &Store, gv: &str) -> Option<Value> {
    let (group, version, infos) = group_versions(store)
        .into_iter()
        .find(|(g, v, _)| gv_path(g, v) == gv)?;
    let mut paths = Map::new();
    for info in infos.iter().filter(|i| i.stored) {
        let scope = if info.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let path = format!("/{gv}/{scope}{}/{{name}}", info.plural);
        let param = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(path, json!({"patch": {
            "operationId": format!("patch{}", info.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": info.kind},
            "parameters": [param],
            "responses": {"200": {"description": "OK"}},
        }}));
    }
    let schemas = crd_schemas(&group, &version, &infos);
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths, "components": {"schemas": schemas}}),
    )
}

/// The `openAPIV3Schema` of every custom resource in a group-version, tagged with its GVK, so
/// `kubectl explain` can describe it. Named like kube-apiserver names them
/// (`sh.keda.v1alpha1.ScaledObject`).
fn crd_schemas(
    group: &str,
    version: &str,
    infos: &[std::sync::Arc<ResourceInfo>],
) -> Map<String, Value> {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    infos
        .iter()
        .filter_map(|info| {
            let mut schema = info.crd_version(version)?.schema.clone()?;
            let map = schema.as_object_mut()?;
            map.insert("x-kubernetes-group-version-kind".into(), json!([{"group": group, "version": version, "kind": info.kind}]));
            let props = map.entry("properties").or_insert_with(|| json!({}));
            if let Some(props) = props.as_object_mut() {
                props.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                props.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                props.entry("metadata").or_insert_with(|| json!({"type": "object", "description": "Standard object's metadata."}));
            }
            Some((format!("{}.{version}.{}", reversed.join("."), info.kind), schema))
        })
        .collect()
}
