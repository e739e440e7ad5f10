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
//!
//! And it bounds the requests in flight ([`MAX_REQUESTS_IN_FLIGHT`]; watches and Lease
//! requests aside, which must never wait behind others). kube-rs speaks HTTP/1.1, so each
//! concurrent request holds a connection of its own: a cold start of 10,000 objects
//! (reconciles, the polls' first status writes and Events at once) opened ~860 of them, each
//! with a TLS handshake and 20–60 KiB of buffers. The API server cannot serve more requests at
//! once on the operator's behalf anyway; the pool (`operator::client`) closes what a burst
//! opened beyond its idle limit.

use std::sync::Arc;

use axum::http::{Method, Request, Uri};
use kube::client::Body;
use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

use super::Metrics;

/// Most requests in flight at once, watches and Lease requests not counted; more wait for a
/// turn (within their caller's timeout).
pub const MAX_REQUESTS_IN_FLIGHT: usize = 128;

/// `client`, with every request counted into `metrics`, sent from the current runtime, and at
/// most [`MAX_REQUESTS_IN_FLIGHT`] of them (watches and Leases aside) at once.
pub fn counting(client: kube::Client, metrics: Arc<Metrics>) -> kube::Client {
    let namespace = client.default_namespace().to_owned();
    let runtime = tokio::runtime::Handle::current();
    let turns = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT));
    let service = tower::service_fn(move |request: Request<Body>| {
        let (client, metrics) = (client.clone(), Arc::clone(&metrics));
        let (runtime, turns) = (runtime.clone(), Arc::clone(&turns));
        async move {
            let (verb, resource) = classify(request.method(), request.uri());
            metrics.record_api_request(verb, &resource);
            // Never closed, so `acquire` only fails if that changes; then nothing waits.
            let _turn = if waits_for_turn(verb, &resource) {
                turns.acquire_owned().await.ok()
            } else {
                None
            };
            // Dropping the caller's future (its timeout) drops the request, as before.
            let sent =
                AbortOnDropHandle::new(runtime.spawn(async move { client.send(request).await }));
            sent.await
                .map_err(|error| kube::Error::Service(Box::new(error)))?
        }
    });
    kube::Client::new(service, namespace)
}

/// Whether a request takes one of the [`MAX_REQUESTS_IN_FLIGHT`] turns: not a watch (it stays
/// open for minutes) nor a Lease request (a renewal queued behind a burst of writes would
/// lose the leadership).
fn waits_for_turn(verb: &str, resource: &str) -> bool {
    verb != "watch" && resource != "leases"
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

    /// A client whose server answers nothing until `release` fires, counting the requests
    /// that reached it.
    fn stalled_client(
        reached: Arc<std::sync::atomic::AtomicUsize>,
        release: tokio_util::sync::CancellationToken,
    ) -> kube::Client {
        let service = tower::service_fn(move |_request: Request<Body>| {
            let (reached, release) = (Arc::clone(&reached), release.clone());
            async move {
                reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                release.cancelled().await;
                Ok::<_, std::convert::Infallible>(
                    axum::http::Response::builder()
                        .body(Body::from(b"{}".to_vec()))
                        .expect("a response"),
                )
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn requests_in_flight_are_bounded_but_watches_and_leases_are_not() {
        let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = tokio_util::sync::CancellationToken::new();
        let client = counting(
            stalled_client(Arc::clone(&reached), release.clone()),
            Arc::new(Metrics::new()),
        );
        let send = |uri: &str| {
            let (client, request) = (client.clone(), Request::get(uri).body(Body::empty()));
            tokio::spawn(async move { client.send(request.expect("a request")).await })
        };
        let mut sent: Vec<_> = (0..MAX_REQUESTS_IN_FLIGHT + 8)
            .map(|i| send(&format!("/api/v1/namespaces/a/configmaps/c{i}")))
            .collect();
        sent.push(send("/api/v1/configmaps?watch=true"));
        sent.push(send(
            "/apis/coordination.k8s.io/v1/namespaces/a/leases/tidescale",
        ));
        let at_most = MAX_REQUESTS_IN_FLIGHT + 2;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while reached.load(std::sync::atomic::Ordering::SeqCst) < at_most
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Give the waiting ones a chance to (wrongly) get through.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            reached.load(std::sync::atomic::Ordering::SeqCst),
            at_most,
            "the cap, plus the watch and the Lease request"
        );
        release.cancel();
        for request in sent {
            let response = request.await.expect("no panic").expect("answered");
            assert!(response.status().is_success());
        }
        assert_eq!(
            reached.load(std::sync::atomic::Ordering::SeqCst),
            MAX_REQUESTS_IN_FLIGHT + 10,
            "the others went through once turns were free"
        );
    }
}
