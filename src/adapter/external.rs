//! `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}?labelSelector=…`
//! (spec/kubernetes.md §1.4): the read every KEDA-style HPA makes.
//!
//! Which ScaledObjects answer: the `labelSelector` is matched against each ScaledObject's labels
//! plus `scaledobject.keda.sh/name=<name>` — the label KEDA puts on every ScaledObject and the
//! selector the owned HPA sends — so `scaledobject.keda.sh/name=orders` picks `orders` (looked up
//! directly, no scan), an absent or empty selector picks every ScaledObject of the namespace that
//! has the metric, and other requirements filter on the ScaledObjects' labels as KEDA's
//! `client.MatchingLabelsSelector` list does. Each matching object contributes one item (the HPA
//! sums them); KEDA instead errors when more than one matches. Metric names match
//! case-insensitively (client-go lowercases them); items carry the name as requested.
//!
//! Values come from the poll loop's records; a metric registered as live is read through the
//! shared [`SingleFlight`](super::live::SingleFlight). A failed read without fallback is a 500
//! with the scaler's (secret-free) error as the cause; a live timeout is a 504.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use futures::future::join_all;
use k8s_openapi::jiff::Timestamp;
use tidescale_scalers::naming::milli_quantity;

use super::api::{ApiState, json_bytes};
use super::live::LiveError;
use super::routes::Query;
use super::selector::Selector;
use super::status::ApiError;
use crate::crd::names::LABEL_SCALED_OBJECT_NAME;
use crate::scaling::store::{Described, MetricHit, MetricRecord};

/// Answers an external metric read.
pub async fn read(
    state: &ApiState,
    namespace: &str,
    metric: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let selector_text = query.label_selector.as_deref().unwrap_or("");
    let selector = parse_selector(state, selector_text)?;
    let hits = matching_hits(state, namespace, metric, &selector);
    if hits.is_empty() {
        let mut message =
            format!("the server could not find the metric {metric} for external metric");
        if !selector.is_empty() {
            message.push_str(&format!(" with selector {selector}"));
        }
        return Err(ApiError::not_found(message));
    }
    let records = resolve_all(state, namespace, &hits).await?;
    Ok(json_bytes(StatusCode::OK, render(metric, &records).into()))
}

/// The `ExternalMetricValueList` of `records`, each named `metric` (no `window`: values are
/// instantaneous; no labels). Written by hand, not through serde: this is the body of every
/// HPA read, and serde escaped each constant key and string anew, which cost more than the
/// rest of the read (benches/adapter_latency.rs). Only the metric name needs escaping:
/// timestamps and quantities are ASCII digits, letters, `-`, `:` and `.`.
fn render(metric: &str, records: &[MetricRecord]) -> Vec<u8> {
    const HEAD: &[u8] = br#"{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},"items":["#;
    let name = serde_json::Value::from(metric).to_string();
    let mut out = Vec::with_capacity(HEAD.len() + 2 + records.len() * (name.len() + 96));
    out.extend_from_slice(HEAD);
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"metricName":"#);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(br#","metricLabels":{},"timestamp":""#);
        out.extend_from_slice(format_timestamp(record.timestamp).as_bytes());
        out.extend_from_slice(br#"","value":""#);
        out.extend_from_slice(milli_quantity(record.value).as_bytes());
        out.extend_from_slice(br#""}"#);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Parses a selector parameter (once per distinct text); syntax errors are 400s.
pub(crate) fn parse_selector(state: &ApiState, text: &str) -> Result<Arc<Selector>, ApiError> {
    state
        .selectors
        .parse(text)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The ScaledObjects of `namespace` that have `metric` and whose labels match `selector`.
fn matching_hits(
    state: &ApiState,
    namespace: &str,
    metric: &str,
    selector: &Selector,
) -> Vec<MetricHit> {
    if let Some(name) = selector.required_value(LABEL_SCALED_OBJECT_NAME) {
        return state
            .store
            .hit(namespace, name, metric)
            .filter(|hit| selects(selector, name, hit.described.as_deref()))
            .into_iter()
            .collect();
    }
    state
        .store
        .hits_in_namespace(namespace, metric, |name, described| {
            selects(selector, name, described)
        })
}

/// Whether `selector` matches ScaledObject `name`'s labels plus its name label.
pub(crate) fn selects(selector: &Selector, name: &str, described: Option<&Described>) -> bool {
    if selector.is_empty() {
        return true;
    }
    selector.matches_with(|key| {
        if key == LABEL_SCALED_OBJECT_NAME {
            Some(name)
        } else {
            described
                .and_then(|d| d.labels.get(key))
                .map(String::as_str)
        }
    })
}

/// The current records of `hits`, in order: live ones queried (concurrently, deduplicated),
/// the others from the store. Any failure fails the whole read, since the HPA would sum a
/// partial answer into a wrong total.
pub(crate) async fn resolve_all(
    state: &ApiState,
    namespace: &str,
    hits: &[MetricHit],
) -> Result<Vec<MetricRecord>, ApiError> {
    join_all(hits.iter().map(|hit| resolve(state, namespace, hit)))
        .await
        .into_iter()
        .collect()
}

async fn resolve(
    state: &ApiState,
    namespace: &str,
    hit: &MetricHit,
) -> Result<MetricRecord, ApiError> {
    // Only an error needs the words (they cost an allocation on every read otherwise).
    let what = || {
        format!(
            "unable to read metric {} of ScaledObject {namespace}/{}",
            hit.metric, hit.object
        )
    };
    let record = match (&hit.live, &hit.record) {
        (Some(querier), _) => state
            .flights
            .query(
                namespace,
                &hit.object,
                &hit.metric,
                querier.clone(),
                state.live_timeout,
            )
            .await
            .map_err(|error| match error {
                LiveError::Timeout(_) => ApiError::timeout(format!("{}: {error}", what())),
                LiveError::Failed(cause) => ApiError::internal(what(), cause),
            })?,
        (None, Some(record)) => record.clone(),
        (None, None) => return Err(ApiError::not_found(format!("{}: not polled yet", what()))),
    };
    match &record.error {
        Some(cause) => Err(ApiError::internal(what(), cause.clone())),
        None => Ok(record),
    }
}

/// `metav1.Time`: RFC 3339, whole seconds, UTC.
///
/// The last second formatted is kept per thread: polls record values a second apart at most,
/// so consecutive reads nearly always carry the same second, and formatting it again cost more
/// than serializing the rest of the answer.
pub(crate) fn format_timestamp(timestamp: Timestamp) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const {
            std::cell::RefCell::new((i64::MIN, String::new()))
        };
    }
    let format = || timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    // `as_second` truncates toward zero: before 1970 two seconds would share a key.
    let second = timestamp.as_second();
    if second < 0 {
        return format();
    }
    LAST.with_borrow_mut(|(last, text)| {
        if *last != second {
            *text = format();
            *last = second;
        }
        text.clone()
    })
}

#[cfg(test)]
#[path = "external_tests.rs"]
mod tests;
