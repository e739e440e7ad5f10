//! How the HPA controller reads metrics: GETs on the aggregated metrics APIs, as
//! kube-controller-manager does through kube-apiserver (`spec/kubernetes.md` §1.4, §1.6, §1.9).
//!
//! [`MetricsApi`] is the seam: [`RouterMetrics`] sends the request in-process to the sandbox's
//! own HTTP router, so it passes through the aggregation proxy and the APIService machinery
//! exactly like a real HPA read; tests may inject any other implementation. This module also
//! turns the responses into [`MetricInput`]s, with client-go's error wording.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use jiff::SignedDuration;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use thiserror::Error;

use super::hpa::MetricInput;
use super::hpa::replicas::Sample;
use super::quantity::milli_value_json;
use crate::clock::parse_time;

/// A failed metrics read, with the text client-go would surface.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct FetchError {
    /// HTTP status code (0 when no response came back).
    pub code: u16,
    /// Error text: the Status message, or client-go's wording for non-Status bodies.
    pub message: String,
}

/// GET access to the aggregated metrics APIs.
#[async_trait]
pub trait MetricsApi: Send + Sync + fmt::Debug {
    /// `GET path_and_query` and decode the JSON body.
    async fn get(&self, path_and_query: &str) -> Result<Value, FetchError>;
}

/// Characters Go's `url.Values.Encode` leaves alone.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Form-encodes one query value like Go (space → `+`).
pub fn encode_query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY)
        .to_string()
        .replace("%20", "+")
}

fn with_query(path: String, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
        .collect();
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}?labelSelector=…`
/// (client-go lowercases the metric name, §1.2).
pub fn external_path(ns: &str, metric: &str, selector: &str) -> String {
    let path = format!(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{}",
        metric.to_lowercase()
    );
    with_query(path, &[("labelSelector", selector)])
}

/// Object metric path (`resource` group-qualified, e.g. `deployments.apps`; Namespace objects
/// use the special `metrics` route, §1.6).
pub fn object_path(
    ns: &str,
    resource: &str,
    name: &str,
    metric: &str,
    metric_selector: &str,
) -> String {
    let base = "/apis/custom.metrics.k8s.io/v1beta2";
    let path = if resource == "namespaces" {
        format!("{base}/namespaces/{ns}/metrics/{}", metric.to_lowercase())
    } else {
        format!(
            "{base}/namespaces/{ns}/{resource}/{name}/{}",
            metric.to_lowercase()
        )
    };
    with_query(path, &[("metricLabelSelector", metric_selector)])
}

/// Pods metric path: every pod matching the target's selector.
pub fn pods_path(ns: &str, metric: &str, pod_selector: &str, metric_selector: &str) -> String {
    let path = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{}",
        metric.to_lowercase()
    );
    with_query(
        path,
        &[
            ("labelSelector", pod_selector),
            ("metricLabelSelector", metric_selector),
        ],
    )
}

/// Resource metrics path (metrics-server's PodMetrics).
pub fn resource_path(ns: &str, pod_selector: &str) -> String {
    with_query(
        format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"),
        &[("labelSelector", pod_selector)],
    )
}

fn items(body: &Value) -> &[Value] {
    body.get("items")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// An `ExternalMetricValueList` as the HPA reads it: every item's milli value.
pub fn external_input(result: Result<Value, FetchError>) -> MetricInput {
    let prefix = "unable to fetch metrics from external metrics API";
    MetricInput::External(
        result
            .map_err(|e| format!("{prefix}: {e}"))
            .and_then(|body| {
                let values = items(&body)
                    .iter()
                    .map(|i| milli_value_json(&i["value"]).map_err(|e| format!("{prefix}: {e}")))
                    .collect::<Result<Vec<i64>, String>>()?;
                if values.is_empty() {
                    return Err("no metrics returned from external metrics API".to_owned());
                }
                Ok(values)
            }),
    )
}

/// A single-object `MetricValueList`.
pub fn object_input(result: Result<Value, FetchError>) -> MetricInput {
    let prefix = "unable to fetch metrics from custom metrics API";
    MetricInput::Object(
        result
            .map_err(|e| format!("{prefix}: {e}"))
            .and_then(|body| match items(&body) {
                [one] => milli_value_json(&one["value"]).map_err(|e| format!("{prefix}: {e}")),
                other => Err(format!(
                    "{prefix}: the server returned {} results when we asked for exactly one",
                    other.len()
                )),
            }),
    )
}

fn window(item: &Value) -> SignedDuration {
    let seconds = item["windowSeconds"]
        .as_i64()
        .or_else(|| item["window"].as_i64());
    let text = item["window"]
        .as_str()
        .and_then(|w| w.trim_end_matches('s').parse::<f64>().ok());
    let default = SignedDuration::from_secs(60);
    match (seconds, text) {
        (Some(s), _) => SignedDuration::from_secs(s),
        // Garbage (negative, NaN, absurdly large) falls back to the HPA's 60 s default.
        (None, Some(s)) if s >= 0.0 => SignedDuration::try_from_secs_f64(s).unwrap_or(default),
        _ => default,
    }
}

/// A pods `MetricValueList` keyed by `describedObject.name`.
pub fn pods_input(result: Result<Value, FetchError>) -> MetricInput {
    let prefix = "unable to fetch metrics from custom metrics API";
    MetricInput::PerPod(
        result
            .map_err(|e| format!("{prefix}: {e}"))
            .and_then(|body| {
                let mut out = BTreeMap::new();
                for item in items(&body) {
                    let value =
                        milli_value_json(&item["value"]).map_err(|e| format!("{prefix}: {e}"))?;
                    let name = item
                        .pointer("/describedObject/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let timestamp = item["timestamp"].as_str().and_then(parse_time);
                    out.insert(
                        name.to_owned(),
                        Sample {
                            value,
                            timestamp,
                            window: window(item),
                        },
                    );
                }
                if out.is_empty() {
                    return Err("no metrics returned from custom metrics API".to_owned());
                }
                Ok(out)
            }),
    )
}

/// metrics-server `PodMetricsList`: per pod, the sum of its containers' usage of `resource`
/// (pods where a container lacks it are skipped), or one container's usage.
pub fn resource_input(
    result: Result<Value, FetchError>,
    resource: &str,
    container: Option<&str>,
) -> MetricInput {
    let prefix = "unable to fetch metrics from resource metrics API";
    MetricInput::PerPod(
        result
            .map_err(|e| format!("{prefix}: {e}"))
            .and_then(|body| {
                let mut out = BTreeMap::new();
                'pods: for item in items(&body) {
                    let containers = item["containers"].as_array().map_or(&[][..], Vec::as_slice);
                    let mut sum = 0i64;
                    for c in containers
                        .iter()
                        .filter(|c| container.is_none_or(|n| c["name"] == n))
                    {
                        match c
                            .pointer(&format!("/usage/{resource}"))
                            .map(milli_value_json)
                        {
                            Some(Ok(v)) => sum = sum.saturating_add(v),
                            _ => continue 'pods,
                        }
                    }
                    let name = item
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let timestamp = item["timestamp"].as_str().and_then(parse_time);
                    out.insert(
                        name.to_owned(),
                        Sample {
                            value: sum,
                            timestamp,
                            window: window(item),
                        },
                    );
                }
                if out.is_empty() {
                    return Err("no metrics returned from resource metrics API".to_owned());
                }
                Ok(out)
            }),
    )
}

/// Sends metrics reads in-process to the sandbox's HTTP router (and so through its
/// aggregation proxy), authenticated with a bearer token.
#[derive(Clone)]
pub struct RouterMetrics {
    router: axum::Router,
    token: Option<String>,
}

impl fmt::Debug for RouterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential: never print it.
        f.debug_struct("RouterMetrics").finish_non_exhaustive()
    }
}

impl RouterMetrics {
    /// Reads through `router`, sending `Authorization: Bearer <token>` when given.
    pub fn new(router: axum::Router, token: Option<String>) -> Self {
        Self { router, token }
    }
}

#[async_trait]
impl MetricsApi for RouterMetrics {
    async fn get(&self, path_and_query: &str) -> Result<Value, FetchError> {
        use tower::ServiceExt;
        let mut request = http::Request::get(path_and_query)
            .header(http::header::ACCEPT, "application/json, */*");
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(axum::body::Body::empty())
            .map_err(|e| FetchError {
                code: 0,
                message: e.to_string(),
            })?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| FetchError {
                code: 0,
                message: e.to_string(),
            })?;
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .map_err(|e| FetchError {
                code,
                message: e.to_string(),
            })?;
        decode_response(code, path_and_query, &bytes)
    }
}

/// Turns a response into JSON or client-go's error text.
pub fn decode_response(code: u16, path: &str, bytes: &[u8]) -> Result<Value, FetchError> {
    let body: Option<Value> = serde_json::from_slice(bytes).ok();
    if (200..300).contains(&code) {
        return body.ok_or_else(|| FetchError {
            code,
            message: "invalid JSON in response body".to_owned(),
        });
    }
    let status_message = body
        .as_ref()
        .filter(|b| b["kind"] == "Status")
        .and_then(|b| b["message"].as_str())
        .map(str::to_owned);
    let message = status_message.unwrap_or_else(|| {
        // client-go's wording for non-Status errors, e.g. the aggregator's plain 503.
        let what = path.split('?').next().unwrap_or(path).rsplit('/').next().unwrap_or_default();
        match code {
            503 => format!("the server is currently unable to handle the request (get {what})"),
            404 => format!("the server could not find the requested resource (get {what})"),
            _ => format!("an error on the server ({}) has prevented the request from succeeding (get {what})",
                String::from_utf8_lossy(bytes).trim()),
        }
    });
    Err(FetchError { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hpa_external_path_lowercases_and_form_encodes() {
        assert_eq!(
            external_path("shop", "queueDepth", "env in (canary,prod),queue=orders"),
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queuedepth?labelSelector=env+in+%28canary%2Cprod%29%2Cqueue%3Dorders"
        );
        assert_eq!(
            external_path("a", "m", ""),
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/a/m"
        );
    }

    #[test]
    fn hpa_custom_and_resource_paths_follow_the_wire_contract() {
        assert_eq!(
            object_path("shop", "deployments.apps", "worker", "Queue", "q=a"),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/worker/queue?metricLabelSelector=q%3Da"
        );
        assert_eq!(
            object_path("shop", "namespaces", "shop", "m", ""),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/m"
        );
        assert_eq!(
            pods_path("shop", "rps", "app=web", ""),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/rps?labelSelector=app%3Dweb"
        );
        assert_eq!(
            resource_path("shop", "app=web"),
            "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods?labelSelector=app%3Dweb"
        );
    }

    #[test]
    fn hpa_custom_inputs_read_items() {
        let one = json!({"items": [{"describedObject": {"name": "w"}, "value": "2500m"}]});
        assert_eq!(
            object_input(Ok(one.clone())),
            MetricInput::Object(Ok(2_500))
        );
        let two = json!({"items": [{"value": "1"}, {"value": "2"}]});
        let MetricInput::Object(Err(e)) = object_input(Ok(two)) else {
            panic!("two items must fail");
        };
        assert!(
            e.ends_with("the server returned 2 results when we asked for exactly one"),
            "{e}"
        );
        let MetricInput::PerPod(Ok(samples)) = pods_input(Ok(one)) else {
            panic!("expected samples");
        };
        assert_eq!(samples["w"].value, 2_500);
        assert_eq!(samples["w"].window, SignedDuration::from_secs(60));
        let MetricInput::PerPod(Err(e)) = pods_input(Ok(json!({"items": []}))) else {
            panic!("empty must fail");
        };
        assert_eq!(e, "no metrics returned from custom metrics API");
    }

    #[test]
    fn hpa_external_input_sums_items_and_rejects_garbage() {
        let body = json!({"items": [{"value": "1500m"}, {"value": "3"}]});
        assert_eq!(
            external_input(Ok(body)),
            MetricInput::External(Ok(vec![1_500, 3_000]))
        );
        let empty = external_input(Ok(json!({"items": []})));
        assert_eq!(
            empty,
            MetricInput::External(Err(
                "no metrics returned from external metrics API".to_owned()
            ))
        );
        let garbage = external_input(Ok(json!({"items": [{"value": "NaN"}]})));
        assert!(
            matches!(garbage, MetricInput::External(Err(e)) if e.starts_with("unable to fetch metrics from external metrics API: "))
        );
    }

    #[test]
    fn hpa_fetch_errors_use_client_go_wording() {
        let status = json!({"kind": "Status", "message": "the server could not find the metric q for external metric"});
        let e = decode_response(404, "/x", status.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            e.message,
            "the server could not find the metric q for external metric"
        );
        let e = decode_response(
            503,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/a/q?x=1",
            b"service unavailable",
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "the server is currently unable to handle the request (get q)"
        );
    }

    #[test]
    fn hpa_resource_input_sums_containers_and_skips_incomplete_pods() {
        let body = json!({"items": [
            {"metadata": {"name": "a"}, "window": "30s", "containers": [{"name": "x", "usage": {"cpu": "100m"}}, {"name": "y", "usage": {"cpu": "50m"}}]},
            {"metadata": {"name": "b"}, "containers": [{"name": "x", "usage": {"memory": "1Mi"}}]}
        ]});
        let MetricInput::PerPod(Ok(samples)) = resource_input(Ok(body), "cpu", None) else {
            panic!("expected samples");
        };
        assert_eq!(samples.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(
            (samples["a"].value, samples["a"].window),
            (150, SignedDuration::from_secs(30))
        );
    }
}
