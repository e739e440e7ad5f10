//! Turning an HTTP request into what it asks for: the request target (kube-apiserver's
//! `RequestInfo`), query options and the decoded body.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ApiError;

/// A request for a resource (as opposed to discovery or health endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// API group (`""` for `/api/v1`).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`), if any.
    pub subresource: Option<String>,
}

impl ResourceRequest {
    /// `apiVersion` of the request path.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    Resources(String, String),
    /// A resource path.
    Resource(ResourceRequest),
    /// Anything else (`/version`, `/healthz`, `/openapi/v2`, unknown paths).
    Other,
}

/// Parses a path the way kube-apiserver's `RequestInfoFactory` does.
pub fn parse_target(path: &str) -> Target {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Target::CoreVersions,
        ["apis"] => return Target::Groups,
        ["apis", g] => return Target::Group((*g).to_owned()),
        ["api", v] => return Target::Resources(String::new(), (*v).to_owned()),
        ["apis", g, v] => return Target::Resources((*g).to_owned(), (*v).to_owned()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Target::Other,
    };
    let mut rest = rest;
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_owned());
        // `/namespaces/{name}/status|finalize` address the Namespace object itself.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let (resource, name, subresource) = match rest {
        ["namespaces", ns] => ("namespaces", Some(*ns), None),
        ["namespaces", ns, sub] => ("namespaces", Some(*ns), Some(*sub)),
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Target::Other,
    };
    if resource == "namespaces" {
        namespace = None;
    }
    Target::Resource(ResourceRequest {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace,
        resource: resource.to_owned(),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

/// Query parameters. A repeated key keeps its last value; the parameters the API server reads
/// are never repeated by clients.
pub type Query = BTreeMap<String, String>;

/// Parses a query string.
pub fn parse_query(query: Option<&str>) -> Query {
    query
        .map(|q| {
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A boolean query flag (`true`, `1`).
pub fn flag(query: &Query, key: &str) -> bool {
    query.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// Decodes a request body as JSON or YAML according to its Content-Type.
pub fn decode_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media == super::protobuf::CONTENT_TYPE {
        return super::protobuf::decode(body);
    }
    let yaml = matches!(media, "application/yaml" | "application/apply-patch+yaml");
    let json_like = media.is_empty()
        || media == "*/*"
        || media == "application/json"
        || media.ends_with("+json");
    if !yaml && !json_like {
        return Err(ApiError::unsupported_media_type(media));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let parsed = if yaml {
        serde_yaml_ng::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match parse_target(path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths_split_into_namespace_resource_name_and_subresource() {
        let r = res("/apis/apps/v1/namespaces/shop/deployments/web/scale");
        assert_eq!(
            (r.namespace.as_deref(), r.resource.as_str()),
            (Some("shop"), "deployments")
        );
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("web"), Some("scale"))
        );
        let all = res("/api/v1/pods");
        assert_eq!((all.namespace, all.name), (None, None));
    }

    #[test]
    fn namespace_objects_and_their_subresources_are_cluster_scoped() {
        let ns = res("/api/v1/namespaces/shop");
        assert_eq!(
            (ns.resource.as_str(), ns.name.as_deref(), ns.namespace),
            ("namespaces", Some("shop"), None)
        );
        let fin = res("/api/v1/namespaces/shop/finalize");
        assert_eq!(fin.subresource.as_deref(), Some("finalize"));
        assert_eq!(parse_target("/apis/apps"), Target::Group("apps".into()));
        assert_eq!(parse_target("/version"), Target::Other);
    }

    #[test]
    fn bodies_must_be_json_or_yaml() {
        assert_eq!(
            decode_body("application/json", b"{\"a\":1}").unwrap()["a"],
            1
        );
        assert_eq!(decode_body("application/yaml", b"a: 1").unwrap()["a"], 1);
        assert_eq!(decode_body("text/plain", b"a").unwrap_err().code, 415);
        assert_eq!(decode_body("application/json", b"{").unwrap_err().code, 400);
    }
}
