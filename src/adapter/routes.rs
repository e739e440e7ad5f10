//! Request paths and query strings → a typed [`Route`] (spec/kubernetes.md §1.3–§1.6, §2.8).
//!
//! Parsing is total: every input yields a route or an [`ApiError`] (404 for paths nothing is
//! served at, including empty, `.` and `..` segments; 400 for bad percent-encoding; 405 for
//! verbs other than GET/HEAD and for `watch=true`). Segments are percent-decoded one by one, so an
//! encoded `/` stays inside its segment. The query string is form-decoded (`+` is a space) because
//! the aggregator re-encodes it with Go's `url.Values.Encode`. HEAD is treated as GET (hyper drops
//! the body), as Go servers do.

use std::borrow::Cow;

use axum::http::Method;

use super::status::ApiError;

/// `external.metrics.k8s.io`.
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";
/// `custom.metrics.k8s.io`.
pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";

/// One of the two API groups served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsGroup {
    /// `external.metrics.k8s.io`.
    External,
    /// `custom.metrics.k8s.io`.
    Custom,
}

/// A served version of `custom.metrics.k8s.io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomVersion {
    /// `v1beta2` (preferred).
    V1beta2,
    /// `v1beta1` (legacy shape: `metricName`, `window`).
    V1beta1,
}

impl CustomVersion {
    /// `v1beta2` / `v1beta1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1beta2 => "v1beta2",
            Self::V1beta1 => "v1beta1",
        }
    }
}

/// A served group/version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupVersion {
    /// `external.metrics.k8s.io/v1beta1`.
    External,
    /// `custom.metrics.k8s.io/<version>`.
    Custom(CustomVersion),
}

/// `{name}` or `*` in a custom metrics path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectName {
    /// One object.
    Named(String),
    /// Every object (filtered by `labelSelector`).
    All,
}

/// The three health endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEndpoint {
    /// `/healthz` (legacy, same checks as livez).
    Healthz,
    /// `/livez`.
    Livez,
    /// `/readyz`.
    Readyz,
}

impl HealthEndpoint {
    /// `healthz` / `livez` / `readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Livez => "livez",
            Self::Readyz => "readyz",
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/apis`.
    GroupList,
    /// `/apis/<group>`.
    Group(MetricsGroup),
    /// `/apis/<group>/<version>`.
    ResourceList(GroupVersion),
    /// `/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}`.
    ExternalMetric {
        /// The HPA's namespace.
        namespace: String,
        /// Metric name as requested.
        metric: String,
    },
    /// `/apis/custom.metrics.k8s.io/{v}/[namespaces/{ns}/]{resource}/{name|*}/{metric}`.
    CustomObjectMetric {
        /// Served version.
        version: CustomVersion,
        /// `None` for the cluster-scoped form.
        namespace: Option<String>,
        /// Group-qualified plural (`deployments.apps`).
        resource: String,
        /// Object name or `*`.
        name: ObjectName,
        /// Metric name as requested.
        metric: String,
    },
    /// `/apis/custom.metrics.k8s.io/{v}/namespaces/{ns}/metrics/{metric}`.
    CustomNamespaceMetric {
        /// Served version.
        version: CustomVersion,
        /// The Namespace object described.
        namespace: String,
        /// Metric name as requested.
        metric: String,
    },
    /// `/healthz`, `/livez`, `/readyz`, optionally `/<endpoint>/<check>`.
    Health {
        /// Which endpoint.
        endpoint: HealthEndpoint,
        /// One check only.
        check: Option<String>,
    },
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3` and below.
    OpenApiV3,
    /// `/version`.
    Version,
}

impl Route {
    /// Whether this is a metric read (where `watch` applies).
    pub fn is_metric_read(&self) -> bool {
        matches!(
            self,
            Self::ExternalMetric { .. }
                | Self::CustomObjectMetric { .. }
                | Self::CustomNamespaceMetric { .. }
        )
    }
}

/// The query parameters the adapter reads; other list parameters are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `labelSelector` (first value), form-decoded.
    pub label_selector: Option<String>,
    /// `metricLabelSelector` (first value), form-decoded.
    pub metric_label_selector: Option<String>,
    /// `watch` parsed like Go's `strconv.ParseBool` (invalid = false).
    pub watch: bool,
    /// `verbose` present (health endpoints).
    pub verbose: bool,
    /// Every `exclude` value (health endpoints).
    pub exclude: Vec<String>,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    /// What is asked for.
    pub route: Route,
    /// Its parameters.
    pub query: Query,
}

/// Parses a request line. See the module doc for the error mapping.
pub fn parse(
    method: &Method,
    path: &str,
    raw_query: Option<&str>,
) -> Result<ParsedRequest, ApiError> {
    let route = parse_path(path)?;
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed());
    }
    let query = parse_query(raw_query.unwrap_or(""))?;
    if query.watch && route.is_metric_read() {
        return Err(ApiError::method_not_allowed());
    }
    Ok(ParsedRequest { route, query })
}

/// The most segments a served path has (`/apis/custom.metrics.k8s.io/{v}/namespaces/{ns}/
/// {resource}/{name}/{metric}`).
const MAX_SEGMENTS: usize = 8;

/// Decodes the path into a route, or 404/400. The segments stay on the stack (this runs on
/// every read); a longer path is still decoded to the end, so a bad escape anywhere is a 400
/// as it would be for a short path.
pub fn parse_path(path: &str) -> Result<Route, ApiError> {
    let rest = path.strip_prefix('/').ok_or_else(ApiError::no_route)?;
    let mut segments: [Cow<'_, str>; MAX_SEGMENTS] = Default::default();
    let mut count = 0;
    for raw in rest.split('/') {
        let segment = percent_decode(raw, false)?;
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(ApiError::no_route());
        }
        if let Some(slot) = segments.get_mut(count) {
            *slot = segment;
        }
        count += 1;
    }
    if count > MAX_SEGMENTS {
        return Err(ApiError::no_route());
    }
    let mut parts = [""; MAX_SEGMENTS];
    for (part, segment) in parts.iter_mut().zip(&segments) {
        *part = segment;
    }
    route_of(&parts[..count]).ok_or_else(ApiError::no_route)
}

fn route_of(parts: &[&str]) -> Option<Route> {
    let owned = |s: &str| s.to_owned();
    Some(match parts {
        ["apis"] => Route::GroupList,
        ["apis", group] => Route::Group(group_of(group)?),
        ["apis", group, version] => Route::ResourceList(group_version(group, version)?),
        [
            "apis",
            EXTERNAL_GROUP,
            "v1beta1",
            "namespaces",
            namespace,
            metric,
        ] => Route::ExternalMetric {
            namespace: owned(namespace),
            metric: owned(metric),
        },
        [
            "apis",
            CUSTOM_GROUP,
            version,
            "namespaces",
            namespace,
            "metrics",
            metric,
        ] => Route::CustomNamespaceMetric {
            version: custom_version(version)?,
            namespace: owned(namespace),
            metric: owned(metric),
        },
        [
            "apis",
            CUSTOM_GROUP,
            version,
            "namespaces",
            namespace,
            resource,
            name,
            metric,
        ] => Route::CustomObjectMetric {
            version: custom_version(version)?,
            namespace: Some(owned(namespace)),
            resource: owned(resource),
            name: object_name(name),
            metric: owned(metric),
        },
        ["apis", CUSTOM_GROUP, version, resource, name, metric] => Route::CustomObjectMetric {
            version: custom_version(version)?,
            namespace: None,
            resource: owned(resource),
            name: object_name(name),
            metric: owned(metric),
        },
        [endpoint] | [endpoint, _] if health_endpoint(endpoint).is_some() => Route::Health {
            endpoint: health_endpoint(endpoint)?,
            check: parts.get(1).map(|c| owned(c)),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3", ..] => Route::OpenApiV3,
        ["version"] => Route::Version,
        _ => return None,
    })
}

fn group_of(group: &str) -> Option<MetricsGroup> {
    match group {
        EXTERNAL_GROUP => Some(MetricsGroup::External),
        CUSTOM_GROUP => Some(MetricsGroup::Custom),
        _ => None,
    }
}

fn group_version(group: &str, version: &str) -> Option<GroupVersion> {
    match group_of(group)? {
        MetricsGroup::External => (version == "v1beta1").then_some(GroupVersion::External),
        MetricsGroup::Custom => custom_version(version).map(GroupVersion::Custom),
    }
}

fn custom_version(version: &str) -> Option<CustomVersion> {
    match version {
        "v1beta2" => Some(CustomVersion::V1beta2),
        "v1beta1" => Some(CustomVersion::V1beta1),
        _ => None,
    }
}

fn object_name(name: &str) -> ObjectName {
    if name == "*" {
        ObjectName::All
    } else {
        ObjectName::Named(name.to_owned())
    }
}

fn health_endpoint(segment: &str) -> Option<HealthEndpoint> {
    match segment {
        "healthz" => Some(HealthEndpoint::Healthz),
        "livez" => Some(HealthEndpoint::Livez),
        "readyz" => Some(HealthEndpoint::Readyz),
        _ => None,
    }
}

/// Form-decodes a query string (Go's `url.ParseQuery`); bad escapes or UTF-8 → 400.
pub fn parse_query(raw: &str) -> Result<Query, ApiError> {
    let mut query = Query::default();
    let mut watch_seen = false;
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key, true)?;
        let value = percent_decode(value, true)?;
        match key.as_ref() {
            "labelSelector" if query.label_selector.is_none() => {
                query.label_selector = Some(value.into_owned());
            }
            "metricLabelSelector" if query.metric_label_selector.is_none() => {
                query.metric_label_selector = Some(value.into_owned());
            }
            "watch" if !watch_seen => {
                watch_seen = true;
                query.watch = matches!(value.as_ref(), "1" | "t" | "T" | "true" | "TRUE" | "True");
            }
            "verbose" => query.verbose = true,
            "exclude" => query.exclude.push(value.into_owned()),
            _ => {}
        }
    }
    Ok(query)
}

/// Decodes `%XX` escapes (and `+` as a space in form mode) into UTF-8 text; borrows `text`
/// when there is nothing to decode.
fn percent_decode(text: &str, form: bool) -> Result<Cow<'_, str>, ApiError> {
    if !text.bytes().any(|b| b == b'%' || (form && b == b'+')) {
        return Ok(Cow::Borrowed(text));
    }
    let bad = || ApiError::bad_request(format!("invalid URL escape in {text:?}"));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'%' => {
                let hex = bytes.get(at + 1..at + 3).ok_or_else(bad)?;
                let high = hex_value(hex[0]).ok_or_else(bad)?;
                let low = hex_value(hex[1]).ok_or_else(bad)?;
                out.push(high << 4 | low);
                at += 3;
            }
            b'+' if form => {
                out.push(b' ');
                at += 1;
            }
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| ApiError::bad_request(format!("invalid UTF-8 in {text:?}")))
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
