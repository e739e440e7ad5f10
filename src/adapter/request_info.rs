//! What a request asks for, in the terms authorization speaks (`spec/kubernetes.md` §2.6):
//! kube-apiserver's `RequestInfo` resolution, so the SubjectAccessReview the adapter sends
//! carries exactly the attributes the API server would have checked itself.
//!
//! - `/apis/<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]` is a
//!   resource request. An external metric read (`…/namespaces/<ns>/<metric>`) is therefore
//!   `list` on resource `<metric>`; a custom metric read (`…/<resource>/<name|*>/<metric>`) is
//!   `get` on `<resource>`, name `<name>`, subresource `<metric>`.
//! - Everything else (`/apis`, `/apis/<group>`, `/apis/<group>/<version>`, `/openapi/…`,
//!   `/version`, `/healthz`) is a non-resource request: `{path, verb}`.
//!
//! Path segments are split on the raw `/` first and percent-decoded afterwards, the same way
//! the router extracts them, so an encoded `%2F` can never make the authorized resource differ
//! from the one served.

use std::borrow::Cow;

use http::Method;

/// Attributes of a resource request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ResourceAttributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (`""` for the core group under `/api`).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace (`""` when cluster-scoped).
    pub namespace: String,
    /// Resource (an external metric's name, or the custom metrics' described resource).
    pub resource: String,
    /// Subresource (a custom metric's name).
    pub subresource: String,
    /// Object name (`*` for a custom-metrics selector read).
    pub name: String,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestInfo {
    /// A resource request.
    Resource(ResourceAttributes),
    /// A non-resource request: URL path and lowercase HTTP verb.
    NonResource {
        /// The URL path, as received.
        path: String,
        /// `get`, `post`, `put`, `patch`, `delete`, …
        verb: String,
    },
}

/// Resolves `method path?query` like kube-apiserver's `RequestInfoFactory`.
pub fn resolve(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
    resource_request(method, path, query).unwrap_or_else(|| RequestInfo::NonResource {
        path: path.to_owned(),
        verb: http_verb(method),
    })
}

/// The non-resource verb: the lowercase HTTP method (`HEAD` counts as `get`).
fn http_verb(method: &Method) -> String {
    if method == Method::HEAD {
        "get".to_owned()
    } else {
        method.as_str().to_ascii_lowercase()
    }
}

/// A segment percent-decoded; borrowed when there is nothing to decode (nearly always).
fn decode(segment: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .unwrap_or(Cow::Borrowed(segment))
}

fn resource_request(method: &Method, path: &str, query: Option<&str>) -> Option<RequestInfo> {
    let parts: Vec<Cow<'_, str>> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let mut attrs = ResourceAttributes::default();
    let rest: &[Cow<'_, str>] = match parts.first().map(AsRef::as_ref) {
        // `/apis/<group>/<version>/<something>`: at least four segments.
        Some("apis") if parts.len() >= 4 => {
            attrs.group = parts[1].to_string();
            &parts[2..]
        }
        // The core group: `/api/<version>/<something>`.
        Some("api") if parts.len() >= 3 => &parts[1..],
        _ => return None,
    };
    attrs.version = rest[0].to_string();
    let mut rest = &rest[1..];
    let mut via_special = false;
    if rest[0] == "watch" || rest[0] == "proxy" {
        if rest.len() < 2 {
            return None;
        }
        attrs.verb = rest[0].to_string();
        rest = &rest[1..];
        via_special = true;
    } else {
        attrs.verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_owned();
    }
    if rest[0] == "namespaces" && rest.len() > 1 {
        attrs.namespace = rest[1].to_string();
        // `namespaces/<ns>/status` and `/finalize` are subresources of the Namespace itself.
        if rest.len() > 2 && rest[2] != "status" && rest[2] != "finalize" {
            rest = &rest[2..];
        }
    }
    if rest.len() >= 3 && !(via_special && attrs.verb == "proxy") {
        attrs.subresource = rest[2].to_string();
    }
    if rest.len() >= 2 {
        attrs.name = rest[1].to_string();
    }
    attrs.resource = rest[0].to_string();
    if attrs.name.is_empty() && attrs.verb == "get" {
        attrs.verb = if watch_requested(query) {
            "watch"
        } else {
            "list"
        }
        .to_owned();
    }
    if attrs.name.is_empty() && attrs.verb == "delete" {
        attrs.verb = "deletecollection".to_owned();
    }
    Some(RequestInfo::Resource(attrs))
}

/// Whether the query asks for a watch (`watch=true`): with the method and the path, all that
/// [`resolve`] reads.
pub fn watch_requested(query: Option<&str>) -> bool {
    query_flag(query, "watch")
}

/// Whether `key` is set to a true value (`true`, `1`, as Go's `strconv.ParseBool`).
fn query_flag(query: Option<&str>, key: &str) -> bool {
    query.unwrap_or_default().split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k == key && matches!(v, "true" | "1" | "t" | "T" | "TRUE" | "True")
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn res(
        verb: &str,
        group: &str,
        ns: &str,
        resource: &str,
        name: &str,
        sub: &str,
    ) -> RequestInfo {
        RequestInfo::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            version: if group.is_empty() { "v1" } else { "v1beta1" }.into(),
            namespace: ns.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
        })
    }

    fn non(path: &str, verb: &str) -> RequestInfo {
        RequestInfo::NonResource {
            path: path.into(),
            verb: verb.into(),
        }
    }

    const EXT: &str = "external.metrics.k8s.io";
    const CUS: &str = "custom.metrics.k8s.io";

    #[rstest]
    #[case::external_metric_is_list(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth",
        Some("labelSelector=a%3Db"),
        res("list", EXT, "shop", "queue_depth", "", "")
    )]
    #[case::external_watch(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q",
        Some("watch=true"),
        res("watch", EXT, "shop", "q", "", "")
    )]
    #[case::watch_false_is_list(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q",
        Some("watch=false"),
        res("list", EXT, "shop", "q", "", "")
    )]
    #[case::custom_named_object(
        "GET",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/web-1/http_requests",
        None,
        res("get", CUS, "default", "pods", "web-1", "http_requests")
    )]
    #[case::custom_wildcard(
        "GET",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/deployments.apps/*/hits",
        None,
        res("get", CUS, "default", "deployments.apps", "*", "hits")
    )]
    #[case::custom_encoded_wildcard(
        "GET",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/%2A/hits",
        None,
        res("get", CUS, "default", "pods", "*", "hits")
    )]
    #[case::custom_cluster_scoped(
        "GET",
        "/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/load",
        None,
        res("get", CUS, "", "nodes", "n1", "load")
    )]
    #[case::custom_namespace_metric(
        "GET",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/metrics/q",
        None,
        res("get", CUS, "default", "metrics", "q", "")
    )]
    #[case::namespace_object(
        "GET",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default",
        None,
        res("get", CUS, "default", "namespaces", "default", "")
    )]
    #[case::namespace_status(
        "PUT",
        "/api/v1/namespaces/default/status",
        None,
        res("update", "", "default", "namespaces", "default", "status")
    )]
    #[case::core_pods_list(
        "GET",
        "/api/v1/namespaces/ns/pods",
        None,
        res("list", "", "ns", "pods", "", "")
    )]
    #[case::post_create(
        "POST",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/q",
        None,
        res("create", EXT, "ns", "q", "", "")
    )]
    #[case::delete_collection(
        "DELETE",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/q",
        None,
        res("deletecollection", EXT, "ns", "q", "", "")
    )]
    #[case::delete_item(
        "DELETE",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/q/x",
        None,
        res("delete", EXT, "ns", "q", "x", "")
    )]
    #[case::patch(
        "PATCH",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/q/x",
        None,
        res("patch", EXT, "ns", "q", "x", "")
    )]
    #[case::special_watch_verb(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1/watch/namespaces/ns/q",
        None,
        res("watch", EXT, "ns", "q", "", "")
    )]
    #[case::encoded_slash_stays_in_segment(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/a%2Fb/q",
        None,
        res("list", EXT, "a/b", "q", "", "")
    )]
    #[case::apis_root("GET", "/apis", None, non("/apis", "get"))]
    #[case::group(
        "GET",
        "/apis/external.metrics.k8s.io",
        None,
        non("/apis/external.metrics.k8s.io", "get")
    )]
    #[case::group_version(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1",
        None,
        non("/apis/external.metrics.k8s.io/v1beta1", "get")
    )]
    #[case::trailing_slash_group_version(
        "GET",
        "/apis/external.metrics.k8s.io/v1beta1/",
        None,
        non("/apis/external.metrics.k8s.io/v1beta1/", "get")
    )]
    #[case::openapi("GET", "/openapi/v2", None, non("/openapi/v2", "get"))]
    #[case::openapi_v3_gv(
        "GET",
        "/openapi/v3/apis/external.metrics.k8s.io/v1beta1",
        None,
        non("/openapi/v3/apis/external.metrics.k8s.io/v1beta1", "get")
    )]
    #[case::version_head("HEAD", "/version", None, non("/version", "get"))]
    #[case::metrics_post("POST", "/metrics", None, non("/metrics", "post"))]
    #[case::api_versions("GET", "/api", None, non("/api", "get"))]
    #[case::api_v1("GET", "/api/v1", None, non("/api/v1", "get"))]
    fn requests_resolve_like_kube_apiserver(
        #[case] method: &str,
        #[case] path: &str,
        #[case] query: Option<&str>,
        #[case] expected: RequestInfo,
    ) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(resolve(&method, path, query), expected);
    }
}
