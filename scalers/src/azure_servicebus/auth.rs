//! Service Bus credentials (spec/scalers.md §4.4): connection strings, SAS tokens signed from
//! them; Azure AD tokens come from the shared workload-identity flow in [`crate::azure_ad`].

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

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
