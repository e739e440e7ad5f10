//! Azure AD tokens from the workload-identity federated flow, shared by every scaler that
//! authenticates with `podIdentity.provider: azure-workload` (Service Bus, managed Prometheus,
//! the RabbitMQ management API).
//!
//! The projected service-account token named by `AZURE_FEDERATED_TOKEN_FILE` is exchanged at
//! `<authority>/<tenant>/oauth2/v2.0/token` for an access token of one scope (client
//! credentials with a JWT client assertion). A [`TokenSource`] caches that token until
//! [`TOKEN_REFRESH_MARGIN`] before it expires, and [`TokenSource::shared`] hands every trigger
//! with the same identity, scope and TLS settings the same source, so N triggers cost one
//! token request per refresh, not N.
//!
//! Tokens live in [`SecretString`]s; error texts carry the endpoint's `error` code only, never
//! its description (which may echo request details) and never a token.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::naming::query_escape;
use crate::pool::Shared;
use crate::pool::effective_timeout;
use crate::pool::http::{self, HttpClient, HttpKey, TlsSettings};

/// Default authority when neither podIdentity nor `AZURE_AUTHORITY_HOST` names one.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";
/// Refresh an AAD token this long before it expires.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Largest federated token (or environment) file read.
pub const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Where an Azure AD token comes from with `podIdentity.provider: azure-workload`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadIdentity {
    /// Application (client) id: `identityId`, else `AZURE_CLIENT_ID`.
    pub client_id: String,
    /// Tenant: `identityTenantId`, else `AZURE_TENANT_ID`.
    pub tenant_id: String,
    /// Authority: `identityAuthorityHost`, else `AZURE_AUTHORITY_HOST`, else public cloud.
    pub authority_host: String,
    /// `AZURE_FEDERATED_TOKEN_FILE`: the projected service-account token (re-read on refresh).
    pub token_file: String,
}

impl WorkloadIdentity {
    /// Resolve from podIdentity and the operator's `AZURE_*` env (injected by the workload
    /// identity webhook). Names the missing setting on failure.
    pub fn resolve(
        pod: &crate::PodIdentity,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let pick = |explicit: &Option<String>, var: &str| -> Option<String> {
            explicit
                .clone()
                .filter(|v| !v.trim().is_empty())
                .or_else(|| env.get(var).cloned())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let client_id = pick(&pod.identity_id, "AZURE_CLIENT_ID")
            .ok_or("workload identity: no client id (identityId or AZURE_CLIENT_ID)")?;
        let tenant_id = pick(&pod.identity_tenant_id, "AZURE_TENANT_ID")
            .ok_or("workload identity: no tenant id (identityTenantId or AZURE_TENANT_ID)")?;
        let authority_host = pick(&pod.identity_authority_host, "AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned());
        let token_file = pick(&None, "AZURE_FEDERATED_TOKEN_FILE")
            .ok_or("workload identity: AZURE_FEDERATED_TOKEN_FILE is not set")?;
        Ok(Self {
            client_id,
            tenant_id,
            authority_host,
            token_file,
        })
    }

    /// `<authority>/<tenant>/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_host.trim_end_matches('/'),
            query_escape(&self.tenant_id)
        )
    }

    /// The client-credentials form for `scope` with the federated token as client assertion.
    pub fn token_form(&self, assertion: &SecretString, scope: &str) -> SecretString {
        let fields = [
            ("client_id", self.client_id.as_str()),
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.expose_secret()),
            ("scope", scope),
        ];
        let form: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", query_escape(v)))
            .collect();
        SecretString::from(form.join("&"))
    }
}

/// A token endpoint reply: `access_token` and `expires_in` (a number, or a string of one).
pub fn parse_token_reply(body: &str) -> Result<(SecretString, Duration), String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|_| "token reply is not JSON".to_owned())?;
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("token reply has no access_token")?;
    let expires_in = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or("token reply has no valid expires_in")?;
    Ok((
        SecretString::from(token.to_owned()),
        Duration::from_secs(expires_in),
    ))
}

/// The `error` code of a token endpoint failure (its description may echo request details).
pub fn token_error(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|j| j.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown error".to_owned())
}

/// Read a small local file (a projected token, an environment file) within `timeout`.
pub async fn read_small_file(path: &str, timeout: Duration) -> Result<String, String> {
    let timeout = effective_timeout(timeout);
    let read = async {
        let len = tokio::fs::metadata(path)
            .await
            .map_err(|e| e.kind().to_string())?
            .len();
        if len > MAX_TOKEN_FILE {
            return Err(format!("larger than {MAX_TOKEN_FILE} bytes"));
        }
        tokio::fs::read_to_string(path)
            .await
            .map_err(|e| e.kind().to_string())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| "read timed out".to_owned())?
}

/// What makes two token sources interchangeable.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SourceKey {
    identity: WorkloadIdentity,
    scope: String,
    tls: TlsSettings,
}

/// Live token sources, shared by every trigger with the same identity, scope and TLS.
static SOURCES: LazyLock<Mutex<HashMap<SourceKey, Weak<TokenSource>>>> =
    LazyLock::new(Default::default);

/// An Azure AD access token for one identity and scope, cached until shortly before expiry.
pub struct TokenSource {
    identity: WorkloadIdentity,
    scope: String,
    token_url: Url,
    http: Shared<HttpKey, HttpClient>,
    /// The token and when it expires; the lock is held across a refresh so concurrent polls
    /// share one token request.
    cache: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("client_id", &self.identity.client_id)
            .field("tenant_id", &self.identity.tenant_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// The source for (`identity`, `scope`) with the token endpoint reached under `tls`:
    /// an existing one when another trigger already holds it, else a new one. No I/O.
    pub fn shared(
        identity: WorkloadIdentity,
        scope: &str,
        tls: &TlsSettings,
    ) -> Result<Arc<Self>, String> {
        let key = SourceKey {
            identity,
            scope: scope.to_owned(),
            tls: tls.clone(),
        };
        let mut sources = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = sources.get(&key).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        let token_url = Url::parse(&key.identity.token_url())
            .map_err(|_| "workload identity: invalid authority host".to_owned())?;
        let http = http::acquire(&token_url, tls)?;
        let source = Arc::new(Self {
            identity: key.identity.clone(),
            scope: key.scope.clone(),
            token_url,
            http,
            cache: Default::default(),
        });
        sources.insert(key, Arc::downgrade(&source));
        Ok(source)
    }

    /// Number of live sources (all identities and scopes); for tests and diagnostics.
    pub fn live_sources() -> usize {
        let sources = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
        sources.values().filter(|w| w.strong_count() > 0).count()
    }

    /// The scope tokens are requested for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Drop the cached token (after a 401), so the next call fetches a fresh one.
    pub async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    /// A valid access token, fetched (re-reading the federated token file) only when the
    /// cached one is missing or close to expiry. Every step is bounded by `deadline`.
    pub async fn token(&self, deadline: Instant) -> Result<SecretString, String> {
        let mut cached = self.cache.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + TOKEN_REFRESH_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("azure ad token request timed out".to_owned());
        }
        let assertion = read_small_file(&self.identity.token_file, left)
            .await
            .map_err(|e| {
                format!("workload identity: cannot read AZURE_FEDERATED_TOKEN_FILE: {e}")
            })?;
        let form = self.identity.token_form(
            &SecretString::from(assertion.trim().to_owned()),
            &self.scope,
        );
        let request = self
            .http
            .client()
            .reqwest()
            .post(self.token_url.clone())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.expose_secret().to_owned());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("azure ad token request timed out".to_owned());
        }
        let (status, body) = self
            .http
            .client()
            .send(request, left)
            .await
            .map_err(|e| format!("azure ad token request: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "azure ad token request: HTTP {}: {}",
                status.as_u16(),
                token_error(&body)
            ));
        }
        let (token, lifetime) = parse_token_reply(&body).map_err(|e| format!("azure ad {e}"))?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}
