//! The adapter's HTTP API without security: [`router`] and the reusable [`handle`], which
//! parse the request (`routes`), check `Accept`, and dispatch to discovery, the external and
//! custom metric reads, health and OpenAPI.
//!
//! No authentication or authorization happens here: the security layer (`server`, `authn`,
//! `authz`) wraps the router, and leader forwarding wraps [`handle`]. Every answer is a 2xx body,
//! a health text, or a `metav1.Status` built from [`ApiError`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::{debug, warn};

use super::discovery::{self, DiscoveryCache};
use super::health::{CheckScope, HealthChecks};
use super::live::{DEFAULT_LIVE_TIMEOUT, SingleFlight};
use super::routes::{self, Route};
use super::selector::SelectorCache;
use super::status::{ApiError, JSON};
use super::{custom, external};
use crate::scaling::store::MetricStore;
use crate::telemetry::Readiness;

/// What the handlers read. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The values the poll loop keeps (and the live queriers it registers).
    pub store: MetricStore,
    /// Checks behind `/healthz`, `/livez`, `/readyz`.
    pub health: HealthChecks,
    /// Upper bound of one live query (`useCachedMetrics: false`); past it, 504.
    pub live_timeout: Duration,
    /// Concurrent live reads of one metric share one call.
    pub(crate) flights: SingleFlight,
    /// Rendered resource lists, until the store's shape changes.
    pub(crate) discovery: Arc<DiscoveryCache>,
    /// Label selectors already parsed.
    pub(crate) selectors: Arc<SelectorCache>,
}

impl ApiState {
    /// Serves `store`; `/readyz` follows `readiness`; live queries time out after 3 s.
    pub fn new(store: MetricStore, readiness: Readiness) -> Self {
        Self {
            store,
            health: HealthChecks::new(readiness),
            live_timeout: DEFAULT_LIVE_TIMEOUT,
            flights: SingleFlight::default(),
            discovery: Arc::new(DiscoveryCache::default()),
            selectors: Arc::default(),
        }
    }

    /// Bounds live queries by `timeout` instead of 3 s.
    pub fn with_live_timeout(mut self, timeout: Duration) -> Self {
        self.live_timeout = timeout;
        self
    }

    /// Adds a named health check (e.g. `auth-config` on readiness).
    pub fn with_health_check(
        mut self,
        name: impl Into<String>,
        scope: CheckScope,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.health = self.health.with_check(name, scope, check);
        self
    }
}

/// The whole API as one axum router (a single fallback handler: paths are parsed by
/// `routes`, so every unknown path gets a Status 404 rather than axum's empty one).
pub fn router(state: ApiState) -> Router {
    Router::new().fallback(serve).with_state(Arc::new(state))
}

/// Reads the request in place: extracting `Method`, `Uri` and `HeaderMap` would copy them, on
/// the path of every HPA read.
async fn serve(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    handle(&state, request.method(), request.uri(), request.headers()).await
}

/// Answers one request; never panics, whatever the input.
pub async fn handle(state: &ApiState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    match dispatch(state, method, uri, headers).await {
        Ok(response) => response,
        Err(error) => {
            // The one place an adapter error is handled, so the one place it is logged. Failed
            // polls were already logged by the poll loop; a live timeout was not.
            if matches!(error, ApiError::Timeout { .. }) {
                warn!(path = %uri.path(), reason = error.kind(), error = %error, "metrics API request failed");
            } else {
                debug!(path = %uri.path(), reason = error.kind(), error = %error, "metrics API request refused");
            }
            error.into_response()
        }
    }
}

async fn dispatch(
    state: &ApiState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let request = routes::parse(method, uri.path(), uri.query())?;
    let query = &request.query;
    if let Route::Health { endpoint, check } = &request.route {
        return Ok(state.health.respond(*endpoint, check.as_deref(), query));
    }
    if !accepts_json(headers) {
        return Err(ApiError::not_acceptable());
    }
    match &request.route {
        Route::GroupList => Ok(discovery::group_list()),
        Route::Group(group) => Ok(discovery::group(*group)),
        Route::ResourceList(group_version) => Ok(discovery::resource_list(state, *group_version)),
        Route::ExternalMetric { namespace, metric } => {
            external::read(state, namespace, metric, query).await
        }
        Route::CustomObjectMetric {
            version,
            namespace,
            resource,
            name,
            metric,
        } => {
            let object = custom::ObjectRequest {
                version: *version,
                namespace: namespace.as_deref(),
                resource,
                name,
                metric,
            };
            custom::read_object(state, &object, query).await
        }
        Route::CustomNamespaceMetric {
            namespace, metric, ..
        } => custom::read_namespace(namespace, metric, query),
        Route::OpenApiV2 => Ok(discovery::openapi_v2(headers)),
        Route::OpenApiV3 => Err(ApiError::not_found(
            "the server does not serve OpenAPI v3 documents",
        )),
        Route::Version => Ok(discovery::version()),
        Route::Health { .. } => Err(ApiError::no_route()),
    }
}

/// Whether the `Accept` headers allow JSON (absent = anything). The aggregated-discovery type
/// (`application/json;…;as=APIGroupDiscoveryList`) counts as JSON: the legacy document is
/// answered with `Content-Type: application/json` and the aggregator falls back (§1.3).
fn accepts_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|range| {
            range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .any(|media| matches!(media.as_str(), "*/*" | "application/*" | JSON | ""))
}

/// A 200 JSON response of `value`.
pub(crate) fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(StatusCode::OK, body.into()),
        Err(error) => {
            ApiError::internal("cannot encode the response", error.to_string()).into_response()
        }
    }
}

/// A JSON response with a pre-rendered body.
pub(crate) fn json_bytes(status: StatusCode, body: axum::body::Bytes) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
        body,
    )
        .into_response()
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "api_test_support.rs"]
pub(crate) mod test_support;
