//! `custom.metrics.k8s.io` reads, v1beta2 and v1beta1 (spec/kubernetes.md §1.6, design.md
//! §4.6): every ScaledObject's trigger metrics, described on two objects so hand-written HPAs
//! (`Object` metrics) and `kubectl get --raw` can read them:
//!
//! - on its scale target: `namespaces/{ns}/deployments.apps/{target}/{metric}` — the resource is
//!   the target's group-qualified plural as recorded by `MetricStore::describe`, matched
//!   case-insensitively; a ScaledObject not described yet is not visible here;
//! - on the ScaledObject itself: `namespaces/{ns}/scaledobjects.keda.sh/{name}/{metric}`.
//!
//! A named object answers exactly one item or 404 (should two ScaledObjects target the same
//! object with the same metric name, the first by name answers). `*` answers every matching
//! object, filtered by `labelSelector` against the ScaledObject's labels plus
//! `scaledobject.keda.sh/name` — for targets too, since tidescale does not watch target labels;
//! no match is a 404. `metricLabelSelector` is parsed (400 on bad syntax) and otherwise ignored:
//! tidescale's metrics carry no labels. Cluster-scoped paths and the Namespace route
//! (`namespaces/{ns}/metrics/{metric}`) are 404: nothing is described on cluster-scoped
//! objects or Namespaces. Values are instantaneous, so `windowSeconds`/`window` are omitted;
//! `describedObject.apiVersion` is the target's `apiVersion` as recorded (`apps/v1`, `v1`).

use std::sync::Arc;

use axum::response::Response;
use serde::Serialize;
use tidescale_scalers::naming::milli_quantity;

use super::api::{ApiState, json_response};
use super::discovery::SCALED_OBJECTS_RESOURCE;
use super::external::{format_timestamp, parse_selector, resolve_all, selects};
use super::routes::{CustomVersion, ObjectName, Query};
use super::selector::Selector;
use super::status::{ApiError, EmptyObject};
use crate::crd::names::API_VERSION as SCALED_OBJECT_API_VERSION;
use crate::scaling::store::{Described, MetricHit};

/// A custom metric read on objects of one resource.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRequest<'a> {
    /// Served version (response shape).
    pub version: CustomVersion,
    /// `None` for cluster-scoped paths.
    pub namespace: Option<&'a str>,
    /// Group-qualified plural.
    pub resource: &'a str,
    /// One object or `*`.
    pub name: &'a ObjectName,
    /// Metric name as requested.
    pub metric: &'a str,
}

/// `ObjectReference` of the described object (empty fields omitted).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribedObject {
    kind: String,
    namespace: String,
    name: String,
    api_version: String,
}

/// v1beta2 `MetricIdentifier`.
#[derive(Debug, Serialize)]
struct MetricIdentifier {
    name: String,
    /// Always `null`: metrics carry no labels.
    selector: Option<()>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricValueV1beta2 {
    described_object: DescribedObject,
    metric: MetricIdentifier,
    timestamp: String,
    value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricValueV1beta1 {
    described_object: DescribedObject,
    metric_name: String,
    timestamp: String,
    value: String,
    selector: Option<()>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricValueList<T> {
    kind: &'static str,
    api_version: String,
    metadata: EmptyObject,
    items: Vec<T>,
}

/// Answers `[namespaces/{ns}/]{resource}/{name|*}/{metric}`.
pub async fn read_object(
    state: &ApiState,
    request: &ObjectRequest<'_>,
    query: &Query,
) -> Result<Response, ApiError> {
    let selector = parse_selector(state, query.label_selector.as_deref().unwrap_or(""))?;
    parse_selector(state, query.metric_label_selector.as_deref().unwrap_or(""))?;
    let found = match request.namespace {
        Some(namespace) => find(state, namespace, request, &selector),
        None => Vec::new(),
    };
    if found.is_empty() {
        return Err(not_found(request, &selector));
    }
    let namespace = request.namespace.unwrap_or_default();
    let hits: Vec<MetricHit> = found.iter().map(|(hit, _)| hit.clone()).collect();
    let records = resolve_all(state, namespace, &hits).await?;
    let rows = found.into_iter().zip(records).map(|((_, object), record)| {
        (
            object,
            format_timestamp(record.timestamp),
            milli_quantity(record.value),
        )
    });
    let api_version = format!("custom.metrics.k8s.io/{}", request.version.as_str());
    let metric = request.metric.to_owned();
    Ok(match request.version {
        CustomVersion::V1beta2 => json_response(&MetricValueList {
            kind: "MetricValueList",
            api_version,
            metadata: EmptyObject {},
            items: rows
                .map(|(described_object, timestamp, value)| MetricValueV1beta2 {
                    described_object,
                    metric: MetricIdentifier {
                        name: metric.clone(),
                        selector: None,
                    },
                    timestamp,
                    value,
                })
                .collect(),
        }),
        CustomVersion::V1beta1 => json_response(&MetricValueList {
            kind: "MetricValueList",
            api_version,
            metadata: EmptyObject {},
            items: rows
                .map(|(described_object, timestamp, value)| MetricValueV1beta1 {
                    described_object,
                    metric_name: metric.clone(),
                    timestamp,
                    value,
                    selector: None,
                })
                .collect(),
        }),
    })
}

/// `namespaces/{ns}/metrics/{metric}`: nothing is described on Namespace objects.
pub fn read_namespace(namespace: &str, metric: &str, query: &Query) -> Result<Response, ApiError> {
    // Checked for its syntax only (a rare read: nothing to cache).
    Selector::parse(query.metric_label_selector.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Err(ApiError::not_found(format!(
        "the server could not find the metric {metric} for namespaces {namespace}"
    )))
}

/// The hits answering `request` in `namespace`, each with the object it is described on.
fn find(
    state: &ApiState,
    namespace: &str,
    request: &ObjectRequest<'_>,
    selector: &Selector,
) -> Vec<(MetricHit, DescribedObject)> {
    let on_scaled_objects = request
        .resource
        .eq_ignore_ascii_case(SCALED_OBJECTS_RESOURCE);
    let scaled_object = |hit: MetricHit| {
        let object = DescribedObject {
            kind: "ScaledObject".to_owned(),
            namespace: namespace.to_owned(),
            name: hit.object.clone(),
            api_version: SCALED_OBJECT_API_VERSION.to_owned(),
        };
        (hit, object)
    };
    if on_scaled_objects {
        return match request.name {
            ObjectName::Named(name) => state
                .store
                .hit(namespace, name, request.metric)
                .map(scaled_object)
                .into_iter()
                .collect(),
            ObjectName::All => state
                .store
                .hits_in_namespace(namespace, request.metric, |name, described| {
                    selects(selector, name, described)
                })
                .into_iter()
                .map(scaled_object)
                .collect(),
        };
    }
    let mut hits = state
        .store
        .hits_in_namespace(namespace, request.metric, |name, described| {
            described.is_some_and(|d| {
                d.target.resource.eq_ignore_ascii_case(request.resource)
                    && match request.name {
                        ObjectName::Named(target) => d.target.name == *target,
                        ObjectName::All => selects(selector, name, Some(d)),
                    }
            })
        });
    if matches!(request.name, ObjectName::Named(_)) {
        hits.truncate(1);
    }
    hits.into_iter()
        .filter_map(|hit| {
            let described: Arc<Described> = hit.described.clone()?;
            let object = DescribedObject {
                kind: described.target.kind.clone(),
                namespace: namespace.to_owned(),
                name: described.target.name.clone(),
                api_version: described.target.api_version.clone(),
            };
            Some((hit, object))
        })
        .collect()
}

fn not_found(request: &ObjectRequest<'_>, selector: &Selector) -> ApiError {
    let (metric, resource) = (request.metric, request.resource);
    ApiError::not_found(match request.name {
        ObjectName::Named(name) => {
            format!("the server could not find the metric {metric} for {resource} {name}")
        }
        ObjectName::All if selector.is_empty() => {
            format!("the server could not find the metric {metric} for {resource}")
        }
        ObjectName::All => format!(
            "the server could not find the metric {metric} for {resource} with selector {selector}"
        ),
    })
}

#[cfg(test)]
#[path = "custom_tests.rs"]
mod tests;
