//! Discovery documents: `/api`, `/apis`, `/apis/{group}`, `/api/v1`, `/apis/{group}/{version}`.
//!
//! kube-rs and kubectl build their REST mappers from these, so every served resource appears
//! with its kind, verbs, short names, categories and subresources (`<plural>/status`,
//! `<plural>/scale` with group `autoscaling`, version `v1`, kind `Scale`). Groups registered by
//! APIService objects that point at a Service are listed too; their resource lists come from
//! the backend through the aggregation proxy. The legacy (unaggregated) form is served: kubectl
//! asks for aggregated discovery first and falls back to it when the reply is plain JSON.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::store::{GroupResource, ResourceInfo, Store, meta};

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

/// Served versions of every non-core group, preferred first, including aggregated groups.
fn groups(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for info in store.registry().all() {
        if info.group.is_empty() {
            continue;
        }
        let versions = groups.entry(info.group.clone()).or_default();
        for v in &info.versions {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    let (services, _) = store.list(
        &GroupResource::new("apiregistration.k8s.io", "apiservices"),
        None,
    );
    let mut aggregated: Vec<(String, String, i64)> = services
        .iter()
        .filter(|s| s.pointer("/spec/service").is_some_and(|v| !v.is_null()))
        .filter_map(|s| {
            let group = s.pointer("/spec/group")?.as_str()?.to_owned();
            let version = s.pointer("/spec/version")?.as_str()?.to_owned();
            let priority = s
                .pointer("/spec/versionPriority")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            Some((group, version, priority))
        })
        .collect();
    aggregated.sort_by_key(|(_, _, p)| -p);
    for (group, version, _) in aggregated {
        let versions = groups.entry(group).or_default();
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    groups
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({"name": name, "versions": versions.iter().map(gv).collect::<Vec<_>>(),
           "preferredVersion": versions.first().map(gv).unwrap_or(Value::Null)})
}

/// `/apis`.
pub fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = groups(store)
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if served.
pub fn group(store: &Store, name: &str) -> Option<Value> {
    let groups = groups(store);
    let versions = groups.get(name)?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn entry(info: &ResourceInfo) -> Value {
    let mut e = json!({"name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
                       "kind": info.kind, "verbs": info.verbs()});
    if !info.short_names.is_empty() {
        e["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        e["categories"] = json!(info.categories);
    }
    e
}

/// The entries of one resource: itself plus its subresources.
pub fn entries(info: &ResourceInfo) -> Vec<Value> {
    let mut out = vec![entry(info)];
    if info.status {
        out.push(json!({"name": format!("{}/status", info.plural), "singularName": "", "namespaced": info.namespaced,
                        "kind": info.kind, "verbs": ["get", "patch", "update"]}));
    }
    if info.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", info.plural), "singularName": "", "namespaced": info.namespaced,
                        "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    out
}

/// `/api/v1` or `/apis/{group}/{version}`, if served locally.
pub fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let infos: Vec<_> = store
        .registry()
        .all()
        .into_iter()
        .filter(|i| i.group == group && i.versions.iter().any(|v| v == version))
        .collect();
    if infos.is_empty() {
        return None;
    }
    let resources: Vec<Value> = infos.iter().flat_map(|i| entries(i)).collect();
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `/version`.
pub fn version() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-tidescale-sandbox", "gitCommit": "sandbox",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0",
           "compiler": "gc", "platform": "linux/amd64"})
}

/// The APIService that serves `group/version` through a Service, if any.
pub fn aggregated_service(store: &Store, group: &str, version: &str) -> Option<Value> {
    let name = format!("{version}.{group}");
    let svc = store
        .get(
            &GroupResource::new("apiregistration.k8s.io", "apiservices"),
            None,
            &name,
        )
        .ok()?;
    let remote = svc.pointer("/spec/service").is_some_and(|s| !s.is_null());
    (remote && !meta::is_deleting(&svc)).then_some(svc)
}

/// The media type of aggregated discovery (`apidiscovery.k8s.io/v2`).
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|a| {
        a.contains("g=apidiscovery.k8s.io")
            && a.contains("v=v2")
            && a.contains("as=APIGroupDiscoveryList")
    })
}

fn discovery_resource(info: &ResourceInfo, version: &str) -> Value {
    let kind = |group: &str, version: &str, kind: &str| json!({"group": group, "version": version, "kind": kind});
    let mut subresources = vec![];
    if info.status {
        subresources.push(json!({"subresource": "status", "responseKind": kind(&info.group, version, &info.kind), "verbs": ["get", "patch", "update"]}));
    }
    if info.scale.is_some() {
        subresources.push(json!({"subresource": "scale", "responseKind": kind("autoscaling", "v1", "Scale"), "verbs": ["get", "patch", "update"]}));
    }
    let mut r = json!({"resource": info.plural, "responseKind": kind(&info.group, version, &info.kind),
        "scope": if info.namespaced { "Namespaced" } else { "Cluster" }, "singularResource": info.singular, "verbs": info.verbs()});
    if !info.short_names.is_empty() {
        r["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        r["categories"] = json!(info.categories);
    }
    if !subresources.is_empty() {
        r["subresources"] = json!(subresources);
    }
    r
}

/// Aggregated discovery for `/api` (`core = true`) or `/apis`. `None` while APIService-backed
/// groups exist: their resources live in the backends, so clients must use legacy discovery
/// (kubectl and client-go fall back when the reply is not aggregated).
pub fn aggregated(store: &Store, core: bool) -> Option<Value> {
    let (services, _) = store.list(
        &GroupResource::new("apiregistration.k8s.io", "apiservices"),
        None,
    );
    if services
        .iter()
        .any(|s| s.pointer("/spec/service").is_some_and(|v| !v.is_null()))
    {
        return None;
    }
    let infos = store.registry().all();
    let names: Vec<String> = if core {
        vec![String::new()]
    } else {
        groups(store).into_keys().collect()
    };
    let items: Vec<Value> = names
        .iter()
        .map(|group| {
            let mut versions: Vec<String> = vec![];
            for i in infos.iter().filter(|i| &i.group == group) {
                for v in &i.versions {
                    if !versions.contains(v) {
                        versions.push(v.clone());
                    }
                }
            }
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = infos
                        .iter()
                        .filter(|i| &i.group == group && i.versions.contains(v))
                        .map(|i| discovery_resource(i, v))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    Some(
        json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}),
    )
}
