//! Errors of the metrics API as `metav1.Status` responses (spec/kubernetes.md §1.5, §5.8).
//!
//! Every failure the adapter answers is a [`ApiError`]; its `IntoResponse` writes the Status JSON
//! clients expect (`kubectl get --raw` prints the message, the HPA puts it in its condition), with
//! the HTTP code equal to the Status `code`. The security layer builds its 401/403 answers with
//! [`ApiError::unauthorized`] and [`ApiError::forbidden`], so the wire shape exists only here.
//! Messages never carry secrets: they are built from paths, selectors and scaler error texts,
//! which are secret-free by construction.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Media type of every JSON answer.
pub const JSON: &str = "application/json";

/// A failed metrics-API request, answered as a `metav1.Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed selector, query or path.
    #[error("{message}")]
    BadRequest {
        /// What was wrong, for the client.
        message: String,
    },
    /// 401: no acceptable credentials.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: the SubjectAccessReview denied the request.
    #[error("{message}")]
    Forbidden {
        /// `<resource>.<group> is forbidden: User "<u>" cannot …`.
        message: String,
        /// API group of the denied resource (`details.group`).
        group: String,
        /// The denied resource (`details.kind`, as Go servers fill it).
        resource: String,
    },
    /// 404: unknown path, metric or object.
    #[error("{message}")]
    NotFound {
        /// What could not be found.
        message: String,
    },
    /// 405: a verb other than GET, or `watch=true`.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 406: the client accepts no media type the adapter produces.
    #[error("{message}")]
    NotAcceptable {
        /// Which types are produced.
        message: String,
    },
    /// 500: the value behind the request could not be read.
    #[error("{message}")]
    Internal {
        /// Summary of what failed.
        message: String,
        /// Underlying reasons (`details.causes[].message`), secret-free.
        causes: Vec<String>,
    },
    /// 503: temporarily unable to answer (e.g. no leader to forward to).
    #[error("{message}")]
    ServiceUnavailable {
        /// Why.
        message: String,
        /// Seconds after which a retry may succeed (`Retry-After` and `retryAfterSeconds`).
        retry_after_seconds: Option<u32>,
    },
    /// 504: a live query did not answer in time.
    #[error("{message}")]
    Timeout {
        /// What timed out.
        message: String,
    },
}

/// Shorthand for handlers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// 400 BadRequest with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
        }
    }

    /// 401 Unauthorized (message `Unauthorized`, as Go servers answer).
    pub fn unauthorized() -> Self {
        Self::Unauthorized
    }

    /// 403 Forbidden with `details: {group, kind: resource}`.
    pub fn forbidden(
        message: impl Into<String>,
        group: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self::Forbidden {
            message: message.into(),
            group: group.into(),
            resource: resource.into(),
        }
    }

    /// 404 NotFound with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
        }
    }

    /// 404 for a path nothing is served at (Go's wording).
    pub fn no_route() -> Self {
        Self::not_found("the server could not find the requested resource")
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::MethodNotAllowed
    }

    /// 406 NotAcceptable listing the produced media type.
    pub fn not_acceptable() -> Self {
        Self::NotAcceptable {
            message: format!("only the following media types are accepted: {JSON}"),
        }
    }

    /// 500 InternalError with one cause.
    pub fn internal(message: impl Into<String>, cause: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
            causes: vec![cause.into()],
        }
    }

    /// 503 ServiceUnavailable, with a `Retry-After` header when `retry_after_seconds` is set.
    pub fn service_unavailable(
        message: impl Into<String>,
        retry_after_seconds: Option<u32>,
    ) -> Self {
        Self::ServiceUnavailable {
            message: message.into(),
            retry_after_seconds,
        }
    }

    /// 504 Timeout with `message`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::Timeout {
            message: message.into(),
        }
    }

    /// The HTTP status (also the Status `code`).
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The Status `reason` (a `metav1.StatusReason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden { .. } => "Forbidden",
            Self::NotFound { .. } => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable { .. } => "NotAcceptable",
            Self::Internal { .. } => "InternalError",
            Self::ServiceUnavailable { .. } => "ServiceUnavailable",
            Self::Timeout { .. } => "Timeout",
        }
    }

    /// A fixed label per variant, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        self.reason()
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Status {
        let details = match self {
            Self::Forbidden {
                group, resource, ..
            } => Some(StatusDetails {
                group: Some(group.clone()),
                kind: Some(resource.clone()),
                ..StatusDetails::default()
            }),
            Self::Internal { causes, .. } if !causes.is_empty() => Some(StatusDetails {
                causes: causes
                    .iter()
                    .map(|message| StatusCause {
                        message: message.clone(),
                    })
                    .collect(),
                ..StatusDetails::default()
            }),
            Self::ServiceUnavailable {
                retry_after_seconds: Some(seconds),
                ..
            } => Some(StatusDetails {
                retry_after_seconds: Some(*seconds),
                ..StatusDetails::default()
            }),
            _ => None,
        };
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: EmptyObject {},
            status: "Failure",
            message: self.to_string(),
            reason: self.reason(),
            details,
            code: self.status_code().as_u16(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_else(|_| {
            // Serializing plain strings and numbers cannot fail; keep a valid body regardless.
            br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","code":500}"#
                .to_vec()
        });
        let mut response = (
            self.status_code(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            body,
        )
            .into_response();
        if let Self::ServiceUnavailable {
            retry_after_seconds: Some(seconds),
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `metav1.Status` as emitted on the wire (Go's field order).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    kind: &'static str,
    api_version: &'static str,
    metadata: EmptyObject,
    status: &'static str,
    message: String,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails>,
    code: u16,
}

/// `{}` (empty `metadata`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EmptyObject {}

/// `metav1.StatusDetails`; empty fields are omitted as in Go.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<StatusCause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

/// One `details.causes[]` entry.
#[derive(Debug, Clone, Serialize)]
struct StatusCause {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    async fn body_of(error: ApiError) -> (StatusCode, Option<HeaderValue>, Value) {
        let response = error.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[rstest]
    #[case::bad_request(
        ApiError::bad_request("bad selector"),
        400,
        "BadRequest",
        "bad selector"
    )]
    #[case::unauthorized(ApiError::unauthorized(), 401, "Unauthorized", "Unauthorized")]
    #[case::not_found(ApiError::not_found("no metric"), 404, "NotFound", "no metric")]
    #[case::method(
        ApiError::method_not_allowed(),
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource"
    )]
    #[case::not_acceptable(
        ApiError::not_acceptable(),
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json"
    )]
    #[case::timeout(ApiError::timeout("slow"), 504, "Timeout", "slow")]
    #[tokio::test]
    async fn plain_errors_have_code_reason_and_message(
        #[case] error: ApiError,
        #[case] code: u16,
        #[case] reason: &str,
        #[case] message: &str,
    ) {
        let (status, _, body) = body_of(error).await;
        assert_eq!(status.as_u16(), code);
        assert_eq!(
            body,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":message,"reason":reason,"code":code})
        );
    }

    #[tokio::test]
    async fn forbidden_carries_group_and_resource_in_details() {
        let message = r#"queue_depth.external.metrics.k8s.io is forbidden: User "bob" cannot list resource "queue_depth" in API group "external.metrics.k8s.io" in the namespace "shop""#;
        let (status, _, body) = body_of(ApiError::forbidden(
            message,
            "external.metrics.k8s.io",
            "queue_depth",
        ))
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":message,"reason":"Forbidden",
                   "details":{"group":"external.metrics.k8s.io","kind":"queue_depth"},"code":403})
        );
    }

    #[tokio::test]
    async fn internal_error_lists_causes() {
        let (status, _, body) =
            body_of(ApiError::internal("cannot read", "connection refused")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["reason"], "InternalError");
        assert_eq!(
            body["details"],
            json!({"causes":[{"message":"connection refused"}]})
        );
    }

    #[tokio::test]
    async fn service_unavailable_sets_retry_after() {
        let (status, retry, body) =
            body_of(ApiError::service_unavailable("no leader", Some(2))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry, Some(HeaderValue::from(2u32)));
        assert_eq!(body["details"], json!({"retryAfterSeconds":2}));
        let (_, retry, body) = body_of(ApiError::service_unavailable("no leader", None)).await;
        assert_eq!(retry, None);
        assert!(body.get("details").is_none());
    }
}
