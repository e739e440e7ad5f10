//! Every Kubernetes API request the operator makes, counted by verb and resource
//! (`tidescale_api_requests_total`), so "no API calls in steady state" (design.md §4.3) is a
//! number on `/metrics` and in the benchmark, not a claim.
//!
//! The counter sits in the client itself: [`counting`] wraps a `kube::Client` in a service that
//! classifies each request from its method, path and query and then sends it through the
//! original client. Every API call of the process is counted, including the controller's and
//! the replica cache's lists and watches and the event recorder's writes.
//!
//! The wrapper also sends every request from the runtime it was built on: a connection the
//! pool opens is a task on the runtime of whoever sent the request that needed it, and the
//! client's connections (the controller's watches among them) must not end up on the poll
//! runtime (`scaling::runtime`) because a poll happened to write a status when the pool was
//! short of one.

use std::sync::Arc;

use axum::http::{Method, Request, Uri};
use kube::client::Body;
use tokio_util::task::AbortOnDropHandle;

use super::Metrics;

/// `client`, with every request counted into `metrics` and sent from the current runtime.
pub fn counting(client: kube::Client, metrics: Arc<Metrics>) -> kube::Client {
    let namespace = client.default_namespace().to_owned();
    let runtime = tokio::runtime::Handle::current();
    let service = tower::service_fn(move |request: Request<Body>| {
        let (client, metrics) = (client.clone(), Arc::clone(&metrics));
        let runtime = runtime.clone();
        async move {
            let (verb, resource) = classify(request.method(), request.uri());
            metrics.record_api_request(verb, &resource);
            // Dropping the caller's future (its timeout) drops the request, as before.
            let sent =
                AbortOnDropHandle::new(runtime.spawn(async move { client.send(request).await }));
            sent.await
                .map_err(|error| kube::Error::Service(Box::new(error)))?
        }
    });
    kube::Client::new(service, namespace)
}

/// The Kubernetes verb and resource of a request: `GET /apis/apps/v1/namespaces/a/deployments/b/scale`
/// is `("get", "deployments/scale")`.
pub fn classify(method: &Method, uri: &Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[][..],
    };
    let rest = match rest {
        ["namespaces", _namespace, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let Some((resource, tail)) = rest.split_first() else {
        return (verb(method, false, uri), "discovery".to_owned());
    };
    let named = !tail.is_empty();
    let resource = match tail.get(1) {
        Some(sub) => format!("{resource}/{sub}"),
        None => (*resource).to_owned(),
    };
    (verb(method, named, uri), resource)
}

fn verb(method: &Method, named: bool, uri: &Uri) -> &'static str {
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, uri: &str) -> (&'static str, String) {
        classify(
            &method,
            &uri.parse().unwrap_or_else(|e| panic!("{uri}: {e}")),
        )
    }

    #[test]
    fn requests_are_classified_by_verb_and_resource() {
        let cases = [
            (
                Method::GET,
                "/apis/apps/v1/namespaces/a/deployments/b/scale",
                "get",
                "deployments/scale",
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/b/scale",
                "patch",
                "deployments/scale",
            ),
            (
                Method::PATCH,
                "/apis/keda.sh/v1alpha1/namespaces/a/scaledobjects/b/status",
                "patch",
                "scaledobjects/status",
            ),
            (
                Method::GET,
                "/apis/keda.sh/v1alpha1/scaledobjects?limit=500",
                "list",
                "scaledobjects",
            ),
            (
                Method::GET,
                "/apis/apps/v1/deployments?watch=true&resourceVersion=5",
                "watch",
                "deployments",
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/a/events",
                "create",
                "events",
            ),
            (Method::GET, "/api/v1/namespaces/a", "get", "namespaces"),
            (Method::GET, "/api/v1/namespaces", "list", "namespaces"),
            (Method::GET, "/apis/apps/v1", "list", "discovery"),
            (
                Method::DELETE,
                "/apis/autoscaling/v2/namespaces/a/horizontalpodautoscalers/keda-hpa-b",
                "delete",
                "horizontalpodautoscalers",
            ),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(of(method, uri), (verb, resource.to_owned()), "{uri}");
        }
    }
}
