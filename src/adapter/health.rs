//! `/healthz`, `/livez`, `/readyz` of the adapter, in the format of Go API servers
//! (spec/kubernetes.md §2.8), for kubelet probes and humans.
//!
//! Every endpoint runs its named checks: `ping` (always ok) everywhere; `ready` (the operator's
//! [`Readiness`]: watches synced, not shutting down) on `/readyz`; plus whatever the caller adds
//! (e.g. `auth-config`). Success is `200 ok`, or with `?verbose` one `[+]<check> ok` line per
//! check and `<endpoint> check passed`. Failure is 500 with every line, failed ones as
//! `[-]<check> failed: reason withheld`, and `<endpoint> check failed` — reasons are withheld from
//! the aggregate because probes are unauthenticated. `?exclude=<check>` skips a check;
//! `/<endpoint>/<check>` runs one (its failure reason is shown, as in Go).

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::routes::{HealthEndpoint, Query};
use super::status::ApiError;
use crate::telemetry::Readiness;

/// A health check: `Ok` or why not.
pub type CheckFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Which endpoints run a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckScope {
    /// `/healthz`, `/livez` and `/readyz`.
    All,
    /// `/readyz` only.
    Readiness,
}

#[derive(Clone)]
struct NamedCheck {
    name: String,
    scope: CheckScope,
    check: CheckFn,
}

/// The named checks behind the three endpoints. Cheap to clone.
#[derive(Clone)]
pub struct HealthChecks {
    checks: Arc<Vec<NamedCheck>>,
}

impl std::fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|c| c.name.as_str()).collect();
        f.debug_struct("HealthChecks")
            .field("checks", &names)
            .finish()
    }
}

impl HealthChecks {
    /// `ping` everywhere and `ready` (from `readiness`) on `/readyz`.
    pub fn new(readiness: Readiness) -> Self {
        let ready: CheckFn = Arc::new(move || {
            if readiness.is_ready() {
                Ok(())
            } else {
                Err("not ready".to_owned())
            }
        });
        Self {
            checks: Arc::new(vec![
                NamedCheck {
                    name: "ping".to_owned(),
                    scope: CheckScope::All,
                    check: Arc::new(|| Ok(())),
                },
                NamedCheck {
                    name: "ready".to_owned(),
                    scope: CheckScope::Readiness,
                    check: ready,
                },
            ]),
        }
    }

    /// Adds the check `name` to the endpoints of `scope`.
    pub fn with_check(
        mut self,
        name: impl Into<String>,
        scope: CheckScope,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.checks).push(NamedCheck {
            name: name.into(),
            scope,
            check: Arc::new(check),
        });
        self
    }

    /// Answers `endpoint` (optionally one `check`) with `query`'s `verbose`/`exclude`.
    pub fn respond(
        &self,
        endpoint: HealthEndpoint,
        check: Option<&str>,
        query: &Query,
    ) -> Response {
        let applicable = self
            .checks
            .iter()
            .filter(|c| c.scope == CheckScope::All || endpoint == HealthEndpoint::Readyz);
        if let Some(wanted) = check {
            let Some(found) = applicable.clone().find(|c| c.name == wanted) else {
                return ApiError::no_route().into_response();
            };
            return match (found.check)() {
                Ok(()) => text(StatusCode::OK, "ok".to_owned()),
                Err(reason) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal server error: {reason}\n"),
                ),
            };
        }
        let mut excluded: Vec<&str> = query.exclude.iter().map(String::as_str).collect();
        let mut lines = String::new();
        let mut failed = false;
        for named in applicable {
            if let Some(at) = excluded.iter().position(|e| *e == named.name) {
                excluded.remove(at);
                lines.push_str(&format!("[+]{} excluded: ok\n", named.name));
                continue;
            }
            if (named.check)().is_ok() {
                lines.push_str(&format!("[+]{} ok\n", named.name));
            } else {
                failed = true;
                lines.push_str(&format!("[-]{} failed: reason withheld\n", named.name));
            }
        }
        if !excluded.is_empty() {
            let quoted: Vec<String> = excluded.iter().map(|e| format!("{e:?}")).collect();
            lines.push_str(&format!(
                "warn: some health checks cannot be excluded: no matches for {}\n",
                quoted.join(",")
            ));
        }
        let name = endpoint.as_str();
        if failed {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{lines}{name} check failed\n"),
            )
        } else if query.verbose {
            text(StatusCode::OK, format!("{lines}{name} check passed\n"))
        } else {
            text(StatusCode::OK, "ok".to_owned())
        }
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use rstest::rstest;

    use super::*;

    async fn call(
        checks: &HealthChecks,
        endpoint: HealthEndpoint,
        check: Option<&str>,
        query: &str,
    ) -> (u16, String) {
        let query = super::super::routes::parse_query(query).unwrap();
        let response = checks.respond(endpoint, check, &query);
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn checks(ready: bool, auth_ok: Arc<AtomicBool>) -> HealthChecks {
        let readiness = Readiness::new();
        if ready {
            readiness.set_ready();
        }
        HealthChecks::new(readiness).with_check("auth-config", CheckScope::Readiness, move || {
            if auth_ok.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("configmap not loaded".to_owned())
            }
        })
    }

    #[rstest]
    #[case::healthz_plain(HealthEndpoint::Healthz, None, "", 200, "ok")]
    #[case::livez_verbose(
        HealthEndpoint::Livez,
        None,
        "verbose",
        200,
        "[+]ping ok\nlivez check passed\n"
    )]
    #[case::readyz_not_ready(
        HealthEndpoint::Readyz,
        None,
        "",
        500,
        "[+]ping ok\n[-]ready failed: reason withheld\n[-]auth-config failed: reason withheld\nreadyz check failed\n"
    )]
    #[case::readyz_excluded(
        HealthEndpoint::Readyz,
        None,
        "exclude=ready&exclude=auth-config&exclude=nope&verbose",
        200,
        "[+]ping ok\n[+]ready excluded: ok\n[+]auth-config excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nreadyz check passed\n"
    )]
    #[case::one_check_fails_with_reason(
        HealthEndpoint::Readyz,
        Some("auth-config"),
        "",
        500,
        "internal server error: configmap not loaded\n"
    )]
    #[case::one_check_ok(HealthEndpoint::Readyz, Some("ping"), "", 200, "ok")]
    #[case::livez_ignores_readiness(HealthEndpoint::Livez, None, "", 200, "ok")]
    #[tokio::test]
    async fn endpoints_answer_like_go_servers(
        #[case] endpoint: HealthEndpoint,
        #[case] check: Option<&str>,
        #[case] query: &str,
        #[case] code: u16,
        #[case] body: &str,
    ) {
        let checks = checks(false, Arc::new(AtomicBool::new(false)));
        assert_eq!(
            call(&checks, endpoint, check, query).await,
            (code, body.to_owned())
        );
    }

    #[tokio::test]
    async fn readyz_passes_once_everything_is_ready() {
        let auth = Arc::new(AtomicBool::new(true));
        let checks = checks(true, auth.clone());
        assert_eq!(
            call(&checks, HealthEndpoint::Readyz, None, "verbose").await,
            (
                200,
                "[+]ping ok\n[+]ready ok\n[+]auth-config ok\nreadyz check passed\n".to_owned()
            )
        );
        auth.store(false, Ordering::SeqCst);
        assert_eq!(call(&checks, HealthEndpoint::Readyz, None, "").await.0, 500);
    }

    #[tokio::test]
    async fn unknown_or_out_of_scope_check_is_not_found() {
        let checks = checks(true, Arc::new(AtomicBool::new(true)));
        assert_eq!(
            call(&checks, HealthEndpoint::Readyz, Some("nope"), "")
                .await
                .0,
            404
        );
        assert_eq!(
            call(&checks, HealthEndpoint::Livez, Some("ready"), "")
                .await
                .0,
            404
        );
    }
}
