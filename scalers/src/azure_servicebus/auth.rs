//! Service Bus credentials (spec/scalers.md §4.4): connection strings, SAS tokens signed from
//! them, and Azure AD tokens from the workload-identity federated flow.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};

use crate::naming::query_escape;

/// How long a generated SAS token is valid; the Azure SDKs use one to two hours.
pub const SAS_VALIDITY: Duration = Duration::from_secs(3600);
/// The Azure AD scope of Service Bus, with the SDK's double slash.
pub const SERVICE_BUS_SCOPE: &str = "https://servicebus.azure.net//.default";
/// Default authority when neither podIdentity nor `AZURE_AUTHORITY_HOST` names one.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";
/// Refresh an AAD token this long before it expires.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A parsed namespace connection string.
#[derive(Clone)]
pub struct ConnectionString {
    /// `host[:port]` from `Endpoint=sb://<fqdn>/`.
    pub fqdn: String,
    /// How requests are signed.
    pub signer: Signer,
}

/// The secret part of a connection string.
#[derive(Clone)]
pub enum Signer {
    /// `SharedAccessKeyName` + `SharedAccessKey`: a SAS token is signed per request.
    Key {
        /// `SharedAccessKeyName`.
        name: String,
        /// `SharedAccessKey`, used as UTF-8 bytes (not base64-decoded).
        key: SecretString,
    },
    /// `SharedAccessSignature=SharedAccessSignature sr=…`: sent as is.
    Token(SecretString),
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signer = match &self.signer {
            Signer::Key { name, .. } => format!("SharedAccessKey(name={name})"),
            Signer::Token(_) => "SharedAccessSignature".to_owned(),
        };
        f.debug_struct("ConnectionString")
            .field("fqdn", &self.fqdn)
            .field("signer", &signer)
            .finish()
    }
}

impl ConnectionString {
    /// Parse `Key=Value;…` (keys case-insensitive, values may contain `=`). Errors never quote
    /// the string: it holds the key.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = BTreeMap::new();
        for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or("connection string element without '='")?;
            parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let endpoint = parts
            .get("endpoint")
            .ok_or("connection string has no Endpoint")?;
        let fqdn = endpoint_host(endpoint)?;
        let signer = match (parts.get("sharedaccesssignature"), parts.get("sharedaccesskeyname"), parts.get("sharedaccesskey")) {
            (Some(sas), _, _) => Signer::Token(SecretString::from(sas.clone())),
            (None, Some(name), Some(key)) => Signer::Key { name: name.clone(), key: SecretString::from(key.clone()) },
            _ => return Err("connection string needs SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature".into()),
        };
        Ok(Self { fqdn, signer })
    }

    /// The `Authorization` header value for a request to `resource` (the entity URL without
    /// query), valid until `now + SAS_VALIDITY`.
    pub fn authorization(&self, resource: &str, now: SystemTime) -> SecretString {
        match &self.signer {
            Signer::Token(token) => token.clone(),
            Signer::Key { name, key } => {
                let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + SAS_VALIDITY;
                SecretString::from(sas_token(resource, name, key, expiry.as_secs()))
            }
        }
    }
}

/// `sb://host[:port]/` (or `https://…`) → `host[:port]`.
fn endpoint_host(endpoint: &str) -> Result<String, String> {
    let rest = ["sb://", "https://", "amqps://"]
        .iter()
        .find_map(|scheme| {
            endpoint
                .get(..scheme.len())
                .filter(|p| p.eq_ignore_ascii_case(scheme))
                .map(|_| &endpoint[scheme.len()..])
        })
        .ok_or("connection string Endpoint must start with sb://")?;
    let host = rest.split('/').next().unwrap_or_default();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err("connection string Endpoint has no valid host".into());
    }
    Ok(host.to_ascii_lowercase())
}

/// `SharedAccessSignature sr=<aud>&sig=<sig>&se=<expiry>&skn=<name>` as the Azure SDK for Go
/// builds it: `aud = lower(QueryEscape(resource))`, `sig = QueryEscape(base64(HMAC-SHA256(key
/// bytes, aud + "\n" + expiry)))`.
pub fn sas_token(resource: &str, key_name: &str, key: &SecretString, expiry: u64) -> String {
    let audience = query_escape(resource).to_lowercase();
    let to_sign = format!("{audience}\n{expiry}");
    let mac_key = hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret().as_bytes());
    let signature = STANDARD.encode(hmac::sign(&mac_key, to_sign.as_bytes()).as_ref());
    format!(
        "SharedAccessSignature sr={audience}&sig={}&se={expiry}&skn={}",
        query_escape(&signature),
        query_escape(key_name)
    )
}

/// Where an Azure AD token comes from with `podIdentity.provider: azure-workload`.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// The client-credentials form with the federated token as client assertion.
    pub fn token_form(&self, assertion: &SecretString) -> SecretString {
        let fields = [
            ("client_id", self.client_id.as_str()),
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.expose_secret()),
            ("scope", SERVICE_BUS_SCOPE),
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
        serde_json::from_str(body).map_err(|_| "azure ad token reply is not JSON".to_owned())?;
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("azure ad token reply has no access_token")?;
    let expires_in = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or("azure ad token reply has no valid expires_in")?;
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

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
