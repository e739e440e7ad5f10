//! Discovery documents, OpenAPI and `/version` (spec/kubernetes.md §1.3, §1.6, §2.8).
//!
//! - `/apis` lists both groups (custom prefers v1beta2); `/apis/<g>` is one group.
//! - `/apis/<g>/<v>` lists one resource per metric currently known: external metrics by their
//!   lowercased name (what the HPA requests), custom metrics as `<resource>/<metric>` on each
//!   scale target's resource and on `scaledobjects.keda.sh`. This path is the aggregator's
//!   availability probe, so the rendered body is cached until the store's shape changes.
//! - Only legacy discovery is served: an aggregated-discovery `Accept` gets the legacy document
//!   with `Content-Type: application/json`, on which the aggregator falls back (§1.3).
//! - `/openapi/v2` is a small valid Swagger 2.0 document for the read paths, with an `ETag`
//!   and `304` on `If-None-Match`; `/openapi/v3` is 404 ("no v3 documents"), which the
//!   aggregator skips silently.

use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::{ApiState, json_bytes, json_response};
use super::routes::{CUSTOM_GROUP, CustomVersion, EXTERNAL_GROUP, GroupVersion, MetricsGroup};

/// The custom-metrics resource naming ScaledObjects themselves.
pub const SCALED_OBJECTS_RESOURCE: &str = "scaledobjects.keda.sh";

/// Rendered resource lists keyed by group/version and the store's shape generation.
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    entries: Mutex<Vec<(GroupVersion, u64, Bytes)>>,
}

fn version_entry(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn group_object(group: MetricsGroup) -> Value {
    match group {
        MetricsGroup::External => json!({
            "name": EXTERNAL_GROUP,
            "versions": [version_entry(EXTERNAL_GROUP, "v1beta1")],
            "preferredVersion": version_entry(EXTERNAL_GROUP, "v1beta1"),
        }),
        MetricsGroup::Custom => json!({
            "name": CUSTOM_GROUP,
            "versions": [version_entry(CUSTOM_GROUP, "v1beta2"), version_entry(CUSTOM_GROUP, "v1beta1")],
            "preferredVersion": version_entry(CUSTOM_GROUP, "v1beta2"),
        }),
    }
}

/// `GET /apis`: `APIGroupList` with both groups.
pub fn group_list() -> Response {
    json_response(&json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [group_object(MetricsGroup::External), group_object(MetricsGroup::Custom)],
    }))
}

/// `GET /apis/<group>`: one `APIGroup`.
pub fn group(group: MetricsGroup) -> Response {
    let mut object = json!({"kind": "APIGroup", "apiVersion": "v1"});
    if let (Some(target), Value::Object(fields)) = (object.as_object_mut(), group_object(group)) {
        target.extend(fields);
    }
    json_response(&object)
}

/// `GET /apis/<group>/<version>`: `APIResourceList`, cached per store shape.
pub fn resource_list(state: &ApiState, group_version: GroupVersion) -> Response {
    let generation = state.store.shape_generation();
    let cached = state.discovery.entries.lock().ok().and_then(|entries| {
        entries
            .iter()
            .find(|(gv, g, _)| *gv == group_version && *g == generation)
            .map(|(_, _, body)| body.clone())
    });
    if let Some(body) = cached {
        return json_bytes(StatusCode::OK, body);
    }
    let body: Bytes = match serde_json::to_vec(&render_resource_list(state, group_version)) {
        Ok(body) => body.into(),
        Err(_) => return json_response(&render_resource_list(state, group_version)),
    };
    if let Ok(mut entries) = state.discovery.entries.lock() {
        entries.retain(|(gv, _, _)| *gv != group_version);
        entries.push((group_version, generation, body.clone()));
    }
    json_bytes(StatusCode::OK, body)
}

fn render_resource_list(state: &ApiState, group_version: GroupVersion) -> Value {
    let resource = |name: String, kind: &str| json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": ["get"]});
    let (group_version_text, resources): (String, Vec<Value>) = match group_version {
        GroupVersion::External => (
            format!("{EXTERNAL_GROUP}/v1beta1"),
            state
                .store
                .metric_names()
                .into_iter()
                .map(|metric| resource(metric, "ExternalMetricValueList"))
                .collect(),
        ),
        GroupVersion::Custom(version) => (
            format!("{CUSTOM_GROUP}/{}", version.as_str()),
            state
                .store
                .described_resources(SCALED_OBJECTS_RESOURCE)
                .into_iter()
                .map(|(resource_name, metric)| {
                    resource(format!("{resource_name}/{metric}"), "MetricValueList")
                })
                .collect(),
        ),
    };
    let mut resources = resources;
    if resources.is_empty() {
        // client-go's discovery treats a group-version without resources as a failure
        // ("received empty response for: external.metrics.k8s.io/v1beta1"), which makes
        // `kubectl api-resources` exit non-zero on a cluster without ScaledObjects; KEDA lists a
        // fixed `externalmetrics` entry for the same reason.
        let (name, kind) = match group_version {
            GroupVersion::External => (PLACEHOLDER.to_owned(), "ExternalMetricValueList"),
            GroupVersion::Custom(_) => (
                format!("{SCALED_OBJECTS_RESOURCE}/{PLACEHOLDER}"),
                "MetricValueList",
            ),
        };
        resources.push(resource(name, kind));
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version_text,
        "resources": resources,
    })
}

/// The resource listed while no metric exists (KEDA's name).
const PLACEHOLDER: &str = "externalmetrics";

/// `GET /version`: Go's `version.Info` shape with the crate version.
pub fn version() -> Response {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json_response(&json!({
        "major": env!("CARGO_PKG_VERSION_MAJOR"),
        "minor": env!("CARGO_PKG_VERSION_MINOR"),
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{arch}", std::env::consts::OS),
    }))
}

/// `GET /openapi/v2`, or 304 when `If-None-Match` names the current ETag.
pub fn openapi_v2(headers: &HeaderMap) -> Response {
    let (body, etag) = openapi_document();
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag.as_str())
        });
    let etag_header = HeaderValue::from_str(etag).ok();
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        json_bytes(StatusCode::OK, body.clone())
    };
    if let Some(value) = etag_header {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The Swagger document and its quoted ETag, rendered once.
fn openapi_document() -> &'static (Bytes, String) {
    static DOCUMENT: OnceLock<(Bytes, String)> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let body: Bytes = serde_json::to_vec(&swagger()).unwrap_or_default().into();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        (body, format!("\"{:016X}\"", hasher.finish()))
    })
}

fn swagger() -> Value {
    let path_param =
        |name: &str| json!({"name": name, "in": "path", "required": true, "type": "string"});
    let query_param =
        |name: &str| json!({"name": name, "in": "query", "type": "string", "uniqueItems": true});
    let get = |id: String, params: Vec<Value>, schema: &str| {
        json!({"get": {
            "operationId": id,
            "produces": ["application/json"],
            "schemes": ["https"],
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{schema}")}},
                "401": {"description": "Unauthorized"},
            },
        }})
    };
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}".to_owned(),
        get(
            "readExternalMetricValue".to_owned(),
            vec![
                path_param("namespace"),
                path_param("metric"),
                query_param("labelSelector"),
            ],
            "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList",
        ),
    );
    for version in [CustomVersion::V1beta2, CustomVersion::V1beta1] {
        let v = version.as_str();
        paths.insert(
            format!("/apis/custom.metrics.k8s.io/{v}/namespaces/{{namespace}}/{{resource}}/{{name}}/{{metric}}"),
            get(
                format!("readNamespacedCustomMetricValue{}", v.to_uppercase()),
                vec![
                    path_param("namespace"),
                    path_param("resource"),
                    path_param("name"),
                    path_param("metric"),
                    query_param("labelSelector"),
                    query_param("metricLabelSelector"),
                ],
                &format!("io.k8s.metrics.pkg.apis.custom_metrics.{v}.MetricValueList"),
            ),
        );
    }
    let list = |item: &str| {
        json!({"type": "object", "required": ["items"], "properties": {
            "kind": {"type": "string"},
            "apiVersion": {"type": "string"},
            "metadata": {"type": "object"},
            "items": {"type": "array", "items": {"type": "object", "description": item}},
        }})
    };
    json!({
        "swagger": "2.0",
        "info": {"title": "tidescale metrics adapter", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "definitions": {
            "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList":
                list("ExternalMetricValue: metricName, metricLabels, timestamp, window, value"),
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList":
                list("MetricValue: describedObject, metric, timestamp, windowSeconds, value"),
            "io.k8s.metrics.pkg.apis.custom_metrics.v1beta1.MetricValueList":
                list("MetricValue: describedObject, metricName, timestamp, window, value, selector"),
        },
    })
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
