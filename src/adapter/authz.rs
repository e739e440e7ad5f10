//! May they (`spec/kubernetes.md` §2.6): delegated authorization through SubjectAccessReview,
//! and [`secure`], the middleware that puts authentication and authorization in front of the
//! adapter's router.
//!
//! Health paths (`/healthz`, `/livez`, `/readyz`, exact) and the `system:masters` group (the
//! aggregator's availability and discovery probes) never cost an API call. Everything else is
//! a SubjectAccessReview with the attributes `request_info` resolves; answers either way are
//! reused for 10 s from a bounded cache, so an HPA re-reading a metric every 15 s costs at
//! most one review per period. A denial is Go's 403 Status text; a review that cannot be made
//! is a 500 (Go's behaviour), never an allow.
//!
//! The cache answers by reference (user, then request line), so an allowed read costs no
//! allocation here: this runs on every HPA read.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::Method;
use http::request::Parts;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as SarResourceAttributes, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use super::auth_config::AuthConfigCell;
use super::authn::{Authenticator, User};
use super::certs::ServingCert;
use super::forward::ReplicaPeer;
use super::peer::PeerCertificates;
use super::request_info::{RequestInfo, resolve, watch_requested};
use super::status::ApiError;

/// Paths every caller may read (kubelet probes come without credentials).
pub const ALWAYS_ALLOWED_PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];
/// Group that is allowed everything.
pub const MASTERS: &str = "system:masters";
/// How long a review answer (either way) is reused.
pub const DECISION_CACHE_TTL: Duration = Duration::from_secs(10);
/// Upper bound of a SubjectAccessReview call.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Cached decisions at most.
const DECISION_CACHE_SIZE: usize = 4096;

/// An authorization answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied, with the reviewer's reason (may be empty).
    Deny(String),
}

/// Review answers by user, then by request line: a hit is two lookups by reference, with no
/// key to build and no `RequestInfo` to resolve (resolution is a pure function of the method,
/// the path and the `watch` flag). The same few users — the HPA controller, the aggregator's
/// probes — ask again and again, so this runs on nearly every metrics read.
#[derive(Default)]
struct Decisions {
    by_user: FastMap<User, FastMap<String, Vec<Answer>>>,
    len: usize,
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One cached answer for a path: the method and `watch` flag it was for, and when it was given.
struct Answer {
    method: Method,
    watch: bool,
    at: Instant,
    decision: Decision,
}

impl Answer {
    fn fresh(&self) -> bool {
        self.at.elapsed() < DECISION_CACHE_TTL
    }
}

impl Decisions {
    fn fresh(&self, user: &User, line: &RequestLine<'_>) -> Option<Decision> {
        self.by_user
            .get(user)?
            .get(line.path)?
            .iter()
            .find(|a| a.method == *line.method && a.watch == line.watch && a.fresh())
            .map(|a| a.decision.clone())
    }

    fn remember(&mut self, user: &User, line: &RequestLine<'_>, decision: Decision) {
        if self.len >= DECISION_CACHE_SIZE {
            self.evict_stale();
        }
        // Only after a real review: the clones are noise beside the API call.
        let answers = self
            .by_user
            .entry(user.clone())
            .or_default()
            .entry(line.path.to_owned())
            .or_default();
        answers.retain(|a| !(a.method == *line.method && a.watch == line.watch));
        answers.push(Answer {
            method: line.method.clone(),
            watch: line.watch,
            at: Instant::now(),
            decision,
        });
        self.len = self.count();
    }

    fn evict_stale(&mut self) {
        for paths in self.by_user.values_mut() {
            for answers in paths.values_mut() {
                answers.retain(Answer::fresh);
            }
            paths.retain(|_, answers| !answers.is_empty());
        }
        self.by_user.retain(|_, paths| !paths.is_empty());
        if self.count() >= DECISION_CACHE_SIZE {
            self.by_user.clear();
        }
    }

    fn count(&self) -> usize {
        self.by_user
            .values()
            .flat_map(|paths| paths.values())
            .map(Vec::len)
            .sum()
    }
}

/// What authorization depends on besides the user.
struct RequestLine<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    watch: bool,
}

impl<'a> RequestLine<'a> {
    fn new(method: &'a Method, path: &'a str, query: Option<&'a str>) -> Self {
        Self {
            method,
            path,
            query,
            watch: watch_requested(query),
        }
    }

    fn info(&self) -> RequestInfo {
        resolve(self.method, self.path, self.query)
    }
}

/// Sends SubjectAccessReviews and caches their answers.
pub struct Authorizer {
    client: kube::Client,
    decisions: Mutex<Decisions>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

fn sar_spec(user: &User, info: &RequestInfo) -> SubjectAccessReviewSpec {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let mut spec = SubjectAccessReviewSpec {
        user: Some(user.name.clone()),
        uid: opt(&user.uid),
        groups: Some(user.groups.clone()),
        extra: (!user.extra.is_empty()).then(|| user.extra.clone().into_iter().collect()),
        ..SubjectAccessReviewSpec::default()
    };
    match info {
        RequestInfo::Resource(a) => {
            spec.resource_attributes = Some(SarResourceAttributes {
                verb: opt(&a.verb),
                group: Some(a.group.clone()),
                version: opt(&a.version),
                namespace: opt(&a.namespace),
                resource: opt(&a.resource),
                subresource: opt(&a.subresource),
                name: opt(&a.name),
                ..SarResourceAttributes::default()
            });
        }
        RequestInfo::NonResource { path, verb } => {
            spec.non_resource_attributes = Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some(verb.clone()),
            });
        }
    }
    spec
}

/// Go's `responsewriters.Forbidden` text and the `details` group and kind.
pub fn forbidden(user: &User, info: &RequestInfo, reason: &str) -> ApiError {
    let suffix = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match info {
        RequestInfo::NonResource { path, verb } => ApiError::forbidden(
            format!(
                "forbidden: User {:?} cannot {verb} path {path:?}{suffix}",
                user.name
            ),
            "",
            "",
        ),
        RequestInfo::Resource(a) => {
            let resource = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            let scope = if a.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace {:?}", a.namespace)
            };
            let what = format!(
                "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}{suffix}",
                user.name, a.verb, a.group
            );
            let qualified = if a.group.is_empty() {
                a.resource.clone()
            } else {
                format!("{}.{}", a.resource, a.group)
            };
            let message = if a.name.is_empty() {
                format!("{qualified} is forbidden: {what}")
            } else {
                format!("{qualified} {:?} is forbidden: {what}", a.name)
            };
            ApiError::forbidden(message, a.group.clone(), a.resource.clone())
        }
    }
}

impl Authorizer {
    /// An authorizer sending reviews with `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            decisions: Mutex::default(),
        }
    }

    /// Whether `user` may make the request `line`; `Err` when no review could be made.
    async fn authorize(&self, user: &User, line: &RequestLine<'_>) -> Result<Decision, String> {
        if ALWAYS_ALLOWED_PATHS.contains(&line.path) || user.groups.iter().any(|g| g == MASTERS) {
            return Ok(Decision::Allow);
        }
        if let Some(decision) = self.lock().fresh(user, line) {
            return Ok(decision);
        }
        let review = SubjectAccessReview {
            spec: sar_spec(user, &line.info()),
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| "SubjectAccessReview timed out".to_owned())?
                .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
        let status = answer.status.unwrap_or_default();
        let decision = if status.allowed {
            Decision::Allow
        } else {
            Decision::Deny(status.reason.unwrap_or_default())
        };
        self.lock().remember(user, line, decision.clone());
        Ok(decision)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Decisions> {
        self.decisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Everything [`secure`] needs: the auth settings, the authenticator and the authorizer.
#[derive(Debug)]
pub struct Security {
    /// The `extension-apiserver-authentication` settings in force (also the TLS CA hints).
    pub auth: Arc<AuthConfigCell>,
    /// Authentication chain.
    pub authenticator: Authenticator,
    /// SubjectAccessReview client.
    pub authorizer: Authorizer,
    /// The certificate every replica serves: a peer presenting it is a fellow replica
    /// forwarding a request it already authorized (`forward`).
    pub replica_certificate: Option<Arc<ServingCert>>,
}

impl Security {
    /// Security reading `auth` and sending reviews with `client`.
    pub fn new(auth: Arc<AuthConfigCell>, client: kube::Client) -> Arc<Self> {
        Arc::new(Self {
            authenticator: Authenticator::new(auth.clone(), client.clone()),
            authorizer: Authorizer::new(client),
            auth,
            replica_certificate: None,
        })
    }

    /// Security that also recognises fellow replicas by the certificate they all serve.
    pub fn with_replicas(
        auth: Arc<AuthConfigCell>,
        client: kube::Client,
        serving: Arc<ServingCert>,
    ) -> Arc<Self> {
        Arc::new(Self {
            authenticator: Authenticator::new(auth.clone(), client.clone()),
            authorizer: Authorizer::new(client),
            auth,
            replica_certificate: Some(serving),
        })
    }

    /// Whether `peer` proved possession of the replicas' shared serving certificate.
    fn is_replica(&self, peer: &PeerCertificates) -> bool {
        let (Some(serving), Some(leaf)) = (&self.replica_certificate, peer.leaf()) else {
            return false;
        };
        serving
            .current()
            .cert
            .first()
            .is_some_and(|own| own.as_ref() == leaf.as_ref())
    }
}

/// Puts authentication and authorization in front of `router`; handlers find the [`User`] in
/// the request extensions.
pub fn secure(router: axum::Router, security: Arc<Security>) -> axum::Router {
    router.layer(SecureLayer(security))
}

/// The layer [`secure`] adds. A plain tower service rather than `middleware::from_fn`, which
/// boxed and moved the request and the inner service once more on every HPA read.
#[derive(Clone)]
struct SecureLayer(Arc<Security>);

impl<S> tower::Layer<S> for SecureLayer {
    type Service = Secured<S>;

    fn layer(&self, inner: S) -> Secured<S> {
        Secured {
            inner,
            security: self.0.clone(),
        }
    }
}

/// `inner`, called only for requests [`admit`] lets through.
#[derive(Clone)]
struct Secured<S> {
    inner: S,
    security: Arc<Security>,
}

impl<S> tower::Service<Request> for Secured<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone is fresh, the ready one is used (tower's rule for services behind `&mut`).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let security = self.security.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            if let Err(refusal) = admit(&security, &mut parts).await {
                return Ok(refusal);
            }
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}

/// Authenticates and authorizes a request; `Err` is the answer to send instead. Strips the
/// credentials it used; adds the [`User`] to the extensions, or marks a fellow replica's
/// request with [`ReplicaPeer`].
async fn admit(security: &Security, parts: &mut Parts) -> Result<(), Response> {
    let peer = parts
        .extensions
        .get::<PeerCertificates>()
        .cloned()
        .unwrap_or_default();
    if security.is_replica(&peer) {
        parts.extensions.insert(ReplicaPeer);
        return Ok(());
    }
    let user = match security
        .authenticator
        .authenticate(&mut parts.headers, &peer)
        .await
    {
        Ok(user) => user,
        Err(error) => {
            tracing::info!(path = %parts.uri.path(), %error, "request not authenticated");
            return Err(ApiError::unauthorized().into_response());
        }
    };
    // Credentials stop here (Go drops `Authorization` once authenticated, whichever method won).
    parts.headers.remove(http::header::AUTHORIZATION);
    let line = RequestLine::new(&parts.method, parts.uri.path(), parts.uri.query());
    match security.authorizer.authorize(&user, &line).await {
        Ok(Decision::Allow) => {
            parts.extensions.insert(user);
            Ok(())
        }
        Ok(Decision::Deny(reason)) => {
            tracing::debug!(user = %user.name, path = line.path, "request forbidden");
            Err(forbidden(&user, &line.info(), &reason).into_response())
        }
        Err(error) => {
            tracing::warn!(%error, "authorizing a request");
            Err(
                ApiError::internal(format!("Internal error occurred: {error}"), error)
                    .into_response(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::request_info::ResourceAttributes;
    use super::*;

    fn user() -> User {
        User {
            name: "bob".into(),
            ..User::anonymous()
        }
    }

    #[test]
    fn external_metric_denial_reads_like_kube_apiserver() {
        let info = RequestInfo::Resource(ResourceAttributes {
            verb: "list".into(),
            group: "external.metrics.k8s.io".into(),
            version: "v1beta1".into(),
            namespace: "shop".into(),
            resource: "queue".into(),
            ..ResourceAttributes::default()
        });
        let denied = forbidden(&user(), &info, "");
        assert_eq!(denied.status_code(), 403);
        assert_eq!(
            denied.to_string(),
            "queue.external.metrics.k8s.io is forbidden: User \"bob\" cannot list resource \"queue\" in API group \"external.metrics.k8s.io\" in the namespace \"shop\""
        );
        let with_reason = forbidden(&user(), &info, "no RBAC policy matched").to_string();
        assert!(
            with_reason.ends_with("\"shop\": no RBAC policy matched"),
            "{with_reason}"
        );
    }

    #[test]
    fn custom_metric_and_non_resource_denials() {
        let info = RequestInfo::Resource(ResourceAttributes {
            verb: "get".into(),
            group: "custom.metrics.k8s.io".into(),
            resource: "nodes".into(),
            subresource: "load".into(),
            name: "n1".into(),
            ..ResourceAttributes::default()
        });
        assert_eq!(
            forbidden(&user(), &info, "").to_string(),
            "nodes.custom.metrics.k8s.io \"n1\" is forbidden: User \"bob\" cannot get resource \"nodes/load\" in API group \"custom.metrics.k8s.io\" at the cluster scope"
        );
        let info = RequestInfo::NonResource {
            path: "/openapi/v2".into(),
            verb: "get".into(),
        };
        assert_eq!(
            forbidden(&user(), &info, "").to_string(),
            "forbidden: User \"bob\" cannot get path \"/openapi/v2\""
        );
    }

    #[test]
    fn sar_carries_the_exact_attributes() {
        let info = resolve(
            &http::Method::GET,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue",
            None,
        );
        let spec = sar_spec(&user(), &info);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json["resourceAttributes"],
            serde_json::json!({"namespace": "shop", "verb": "list", "group": "external.metrics.k8s.io", "version": "v1beta1", "resource": "queue"})
        );
        assert_eq!(json["user"], "bob");
        assert!(json.get("uid").is_none());
    }
}
