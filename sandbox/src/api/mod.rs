//! The HTTP front end: one axum fallback handler that routes like kube-apiserver.
//!
//! Kubernetes paths are not a fixed route table (CRDs add resources at run time, namespaces
//! nest, subresources hang off names), so instead of axum routes the handler parses the path
//! into a [`request::Target`] and dispatches on it: health and version endpoints, discovery,
//! OpenAPI, the aggregation proxy for APIService-backed groups, review resources, and the
//! resource verbs in [`handlers`]. Authentication and authorization run first ([`crate::auth`]).
//! Every failure leaves as a `metav1.Status` ([`ApiError`]); nothing a client sends can panic
//! the server.

pub mod convert;
pub mod discovery;
pub mod filter;
pub mod handlers;
pub mod openapi;
pub mod protobuf;
pub mod request;
pub mod scale;
pub mod table;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::auth::rbac::{self, Attributes};
use crate::auth::{Authenticator, UserInfo, reviews};
use crate::error::ApiError;
use crate::pki::Pki;
use crate::server::PeerIdentity;
use crate::store::Store;
use request::{Query, ResourceRequest, Target, parse_query};

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared state of the HTTP server.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The object store.
    pub store: Arc<Store>,
    /// Known bearer tokens.
    pub auth: Arc<Authenticator>,
    /// Certificates (the aggregation proxy presents the front-proxy client certificate).
    pub pki: Arc<Pki>,
    /// `host:port` advertised in `/api`.
    pub server_address: String,
    /// How often watches with `allowWatchBookmarks` get a bookmark.
    pub bookmark_interval: Duration,
    /// Cancelled when the server shuts down; ends open watches.
    pub shutdown: CancellationToken,
}

/// A successful JSON reply.
#[derive(Debug)]
pub struct Reply {
    code: StatusCode,
    body: Value,
}

impl Reply {
    /// 200 OK.
    pub fn ok(body: Value) -> Self {
        Self {
            code: StatusCode::OK,
            body,
        }
    }
    /// Any code.
    pub fn new(code: StatusCode, body: Value) -> Self {
        Self { code, body }
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        json_response(self.code, &self.body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.to_status())
    }
}

/// The router: everything goes through [`dispatch`].
pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<ApiState>, req: Request) -> Response {
    match route(&state, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn text(body: &'static str) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The RBAC attributes of a request.
fn attributes(method: &Method, path: &str, target: &Target, query: &Query) -> Attributes {
    let Target::Resource(r) = target else {
        return Attributes {
            verb: method.as_str().to_ascii_lowercase().replace("head", "get"),
            path: path.to_owned(),
            ..Attributes::default()
        };
    };
    let verb = match (method.as_str(), r.name.is_some()) {
        ("GET" | "HEAD", false) if request::flag(query, "watch") => "watch",
        ("GET" | "HEAD", false) => "list",
        ("GET" | "HEAD", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        (other, _) => {
            return Attributes {
                verb: other.to_ascii_lowercase(),
                resource_request: true,
                ..Attributes::default()
            };
        }
    };
    Attributes {
        verb: verb.into(),
        resource_request: true,
        group: r.group.clone(),
        resource: r.resource.clone(),
        subresource: r.subresource.clone().unwrap_or_default(),
        name: r.name.clone().unwrap_or_default(),
        namespace: if r.resource == "namespaces" {
            r.name.clone().unwrap_or_default()
        } else {
            r.namespace.clone().unwrap_or_default()
        },
        path: path.to_owned(),
    }
}

/// Authenticates and authorizes a request.
fn admit(
    state: &ApiState,
    parts: &http::request::Parts,
    target: &Target,
    query: &Query,
) -> Result<UserInfo, ApiError> {
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let peer = parts
        .extensions
        .get::<PeerIdentity>()
        .and_then(|p| p.0.as_ref());
    let user = state
        .auth
        .authenticate(authorization, peer)
        .map_err(|_| ApiError::unauthorized())?;
    let attrs = attributes(&parts.method, parts.uri.path(), target, query);
    match rbac::authorize(&state.store, &user, &attrs) {
        Ok(_) => Ok(user),
        Err(_) if user.is_anonymous() => Err(ApiError::unauthorized()),
        Err(_) => Err(rbac::forbidden(&user, &attrs)),
    }
}

/// Health, version and OpenAPI endpoints; `None` for every other path.
fn non_resource(state: &ApiState, path: &str) -> Option<Result<Response, ApiError>> {
    let reply = |doc: Value| Some(Ok(Reply::ok(doc).into_response()));
    match path {
        "/healthz" | "/livez" | "/readyz" => Some(Ok(text("ok"))),
        "/version" | "/version/" => reply(discovery::version()),
        "/openapi/v3" => reply(openapi::v3_index(&state.store)),
        _ => path.strip_prefix("/openapi/v3/").map(|gv| {
            openapi::v3_document(&state.store, gv)
                .map(|d| Reply::ok(d).into_response())
                .ok_or_else(ApiError::no_route)
        }),
    }
}

/// Discovery documents served locally; `Ok(None)` for resource paths.
fn local_discovery(
    state: &ApiState,
    method: &Method,
    target: &Target,
) -> Result<Option<Value>, ApiError> {
    let read_only = method == Method::GET || method == Method::HEAD;
    let store = &state.store;
    let found = match target {
        Target::CoreVersions if read_only => Some(discovery::core_versions(&state.server_address)),
        Target::Groups if read_only => Some(discovery::group_list(store)),
        Target::Group(g) if read_only => discovery::group(store, g),
        Target::Resources(g, v) if read_only => discovery::resource_list(store, g, v),
        Target::Resource(_) => return Ok(None),
        Target::Other => return Err(ApiError::no_route()),
        _ => return Err(ApiError::method_not_allowed(method.as_str())),
    };
    found.map(Some).ok_or_else(ApiError::no_route)
}

/// Whether the client accepts JSON (every client that can also take protobuf does).
fn acceptable(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept
            .split(',')
            .map(|a| a.split(';').next().unwrap_or_default().trim())
            .any(|media| {
                matches!(
                    media,
                    "*/*" | "application/*" | "application/json" | "application/yaml" | ""
                ) || media.ends_with("+json")
            })
}

/// Aggregated discovery for `/api` and `/apis` when the client asks for it and it is served.
fn aggregated_discovery(
    state: &ApiState,
    method: &Method,
    target: &Target,
    accept: &str,
) -> Option<Response> {
    if !matches!(target, Target::CoreVersions | Target::Groups)
        || method != Method::GET
        || !discovery::wants_aggregated(accept)
    {
        return None;
    }
    let doc = discovery::aggregated(&state.store, *target == Target::CoreVersions)?;
    Some(
        (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, discovery::AGGREGATED)],
            doc.to_string(),
        )
            .into_response(),
    )
}

async fn route(state: &ApiState, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parse_query(parts.uri.query());
    let method = parts.method.clone();
    let target = request::parse_target(&path);
    let user = admit(state, &parts, &target, &query)?;
    if let Some(answer) = non_resource(state, &path) {
        return answer;
    }
    let store = &state.store;
    let aggregated = match &target {
        Target::Resources(g, v) => discovery::aggregated_service(store, g, v),
        Target::Resource(r) if !r.group.is_empty() => {
            discovery::aggregated_service(store, &r.group, &r.version)
        }
        _ => None,
    };
    if let Some(svc) = aggregated {
        return Ok(crate::aggregator::proxy(state, &svc, &user, &parts, body).await);
    }
    let accept = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != Target::Other && !acceptable(accept) {
        return Err(ApiError::not_acceptable(accept));
    }
    if let Some(response) = aggregated_discovery(state, &method, &target, accept) {
        return Ok(response);
    }
    if let Some(doc) = local_discovery(state, &method, &target)? {
        return Ok(Reply::ok(doc).into_response());
    }
    let Target::Resource(res) = target else {
        return Err(ApiError::no_route());
    };
    let info = store
        .registry()
        .resolve(&res.group, &res.version, &res.resource)
        .ok_or_else(ApiError::no_route)?;
    if method == Method::GET && res.name.is_none() && request::flag(&query, "watch") {
        let stream = (state.bookmark_interval, state.shutdown.clone());
        return watch::start(store, info, &res, &query, accept, stream);
    }
    let body = to_bytes(Body::new(body), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("unable to read the request body: {e}")))?;
    if !info.stored {
        return review(state, &user, &res, &parts.headers, &method, &body);
    }
    let call = handlers::Call {
        store,
        info,
        req: &res,
        query: &query,
        headers: &parts.headers,
        body: &body,
    };
    handlers::handle(&call, &method).map(IntoResponse::into_response)
}

fn review(
    state: &ApiState,
    user: &UserInfo,
    res: &ResourceRequest,
    headers: &HeaderMap,
    method: &Method,
    body: &[u8],
) -> Result<Response, ApiError> {
    if method != Method::POST || res.name.is_some() {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body = request::decode_body(content_type, body)?;
    let out = reviews::review(
        &state.store,
        &state.auth,
        user,
        &res.resource,
        res.namespace.as_deref(),
        body,
    )?;
    Ok(Reply::new(StatusCode::CREATED, out).into_response())
}
