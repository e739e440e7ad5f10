//! The Azure Service Bus worker, over Service Bus's REST API with a SAS key: peek-lock receive
//! (`POST /<queue>/messages/head`), simulated work, then delete the locked message
//! (`DELETE /<queue>/messages/<messageId>/<lockToken>`), which completes it.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SERVICEBUS_CONNECTION_STRING` | required | `Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…` (a policy with `Listen`) |
//! | `SERVICEBUS_QUEUE` | `EntityPath` of the connection string | queue to consume |
//! | `SERVICEBUS_ENDPOINT` | `https://NS.servicebus.windows.net` | base URL override (emulators, tests) |
//! | `RECEIVE_TIMEOUT_SECS` | `30` | long-poll time of one receive |
//! | `WORK_MS` | `500` | simulated work per message |
//!
//! Why REST and not the `azure_messaging_servicebus` crate: see the README in this folder. A
//! message whose lock expires while the worker is stopped goes back to the queue (its delivery
//! count rises), so a worker killed mid-message loses nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Common, Progress, env_parse, env_required, simulate_work};

/// Validity of each SAS token the worker signs.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Pause after a failed receive before trying again.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Characters Go's `url.QueryEscape` leaves as they are (what the Azure SDKs and tidescale's
/// Service Bus scaler sign with); everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A parsed Service Bus connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `https://NS.servicebus.windows.net` (from `Endpoint=sb://…`).
    pub endpoint: String,
    /// `SharedAccessKeyName`.
    pub key_name: String,
    /// `SharedAccessKey` (never logged).
    pub key: String,
    /// `EntityPath`, when the policy belongs to one queue.
    pub entity_path: Option<String>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut entity_path = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                bail!("connection string part without '=' (expected Name=Value)");
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().to_owned()),
                "sharedaccesskeyname" => key_name = Some(value.trim().to_owned()),
                "sharedaccesskey" => key = Some(value.trim().to_owned()),
                "entitypath" => entity_path = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let endpoint = endpoint.context("connection string has no Endpoint")?;
        let host = endpoint
            .strip_prefix("sb://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .context("connection string Endpoint must start with sb://")?
            .trim_end_matches('/');
        Ok(Self {
            endpoint: format!("https://{host}"),
            key_name: key_name.context("connection string has no SharedAccessKeyName")?,
            key: key.context("connection string has no SharedAccessKey")?,
            entity_path,
        })
    }
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Credentials and namespace.
    pub connection: ConnectionString,
    /// Queue to consume.
    pub queue: String,
    /// Base URL requests go to (normally the connection string's endpoint).
    pub endpoint: String,
    /// Long-poll time of one receive.
    pub receive_timeout: Duration,
    /// Shared settings.
    pub common: Common,
}

impl Config {
    /// Read the variables in the table above.
    pub fn from_env() -> anyhow::Result<Self> {
        let connection: ConnectionString = env_required("SERVICEBUS_CONNECTION_STRING")?
            .parse()
            .context("SERVICEBUS_CONNECTION_STRING is not a Service Bus connection string")?;
        let queue = match env_required("SERVICEBUS_QUEUE") {
            Ok(queue) => queue,
            Err(e) => connection.entity_path.clone().ok_or(e)?,
        };
        let endpoint = crate::env_or("SERVICEBUS_ENDPOINT", &connection.endpoint);
        Ok(Self {
            connection,
            queue,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            receive_timeout: Duration::from_secs(env_parse("RECEIVE_TIMEOUT_SECS", 30)?),
            common: Common::from_env()?,
        })
    }
}

/// A SAS token for `resource_uri` signed with the policy `key_name`/`key`, valid until
/// `expiry` (Unix seconds), built as the Azure SDK for Go builds it:
/// `SharedAccessSignature sr=<aud>&sig=<sig>&se=<expiry>&skn=<name>` with
/// `aud = lower(escape(resource))` and `sig = escape(base64(HMAC-SHA256(key, aud + "\n" + expiry)))`.
pub fn sas_token(resource_uri: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let audience = utf8_percent_encode(resource_uri, UNRESERVED)
        .to_string()
        .to_lowercase();
    let to_sign = format!("{audience}\n{expiry}");
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let signature = ring::hmac::sign(&hmac_key, to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
    format!(
        "SharedAccessSignature sr={audience}&sig={}&se={expiry}&skn={}",
        utf8_percent_encode(&signature, UNRESERVED),
        utf8_percent_encode(key_name, UNRESERVED)
    )
}

/// The `BrokerProperties` header of a received message (the fields the worker uses).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BrokerProperties {
    message_id: String,
    lock_token: String,
    #[serde(default)]
    delivery_count: u32,
}

struct Client {
    http: reqwest::Client,
    config: Config,
}

impl Client {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.receive_timeout + Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            config: config.clone(),
        })
    }

    fn authorization(&self) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock before 1970")?;
        let resource = format!("{}/{}", self.config.connection.endpoint, self.config.queue);
        Ok(sas_token(
            &resource,
            &self.config.connection.key_name,
            &self.config.connection.key,
            (now + TOKEN_LIFETIME).as_secs(),
        ))
    }

    fn queue_url(&self) -> String {
        format!(
            "{}/{}",
            self.config.endpoint,
            utf8_percent_encode(&self.config.queue, UNRESERVED)
        )
    }

    /// Peek-lock the next message; `None` when the long poll ended with an empty queue.
    async fn receive(&self) -> anyhow::Result<Option<(BrokerProperties, usize)>> {
        let response = self
            .http
            .post(format!("{}/messages/head", self.queue_url()))
            .query(&[("timeout", self.config.receive_timeout.as_secs())])
            .header("Authorization", self.authorization()?)
            .header("Content-Length", "0")
            .send()
            .await
            .context("receiving from Service Bus")?;
        match response.status().as_u16() {
            204 => Ok(None),
            200 | 201 => {
                let properties = response
                    .headers()
                    .get("BrokerProperties")
                    .context("received message has no BrokerProperties header")?
                    .to_str()
                    .context("BrokerProperties header is not text")?;
                let properties: BrokerProperties = serde_json::from_str(properties)
                    .context("BrokerProperties header is not the expected JSON")?;
                let body = response.bytes().await.context("reading the message body")?;
                Ok(Some((properties, body.len())))
            }
            status => bail!(
                "Service Bus receive answered HTTP {status} (check the policy has Listen rights and the queue exists)"
            ),
        }
    }

    /// Complete (delete) a peek-locked message.
    async fn complete(&self, properties: &BrokerProperties) -> anyhow::Result<()> {
        let url = format!(
            "{}/messages/{}/{}",
            self.queue_url(),
            utf8_percent_encode(&properties.message_id, UNRESERVED),
            utf8_percent_encode(&properties.lock_token, UNRESERVED),
        );
        let response = self
            .http
            .delete(url)
            .header("Authorization", self.authorization()?)
            .send()
            .await
            .context("completing a Service Bus message")?;
        if !response.status().is_success() {
            bail!(
                "Service Bus delete answered HTTP {} (the lock may have expired: raise the queue's lock duration above WORK_MS)",
                response.status().as_u16()
            );
        }
        Ok(())
    }
}

/// Consume until `shutdown` fires.
pub async fn run(
    config: &Config,
    shutdown: CancellationToken,
    progress: Progress,
) -> anyhow::Result<()> {
    let client = Client::new(config)?;
    info!(endpoint = %config.endpoint, queue = %config.queue, work_ms = config.common.work.as_millis() as u64, "consuming");
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            received = client.receive() => received,
        };
        let (properties, bytes) = match received {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = format!("{e:#}"), "receive failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(RETRY_PAUSE) => continue,
                }
            }
        };
        simulate_work(config.common.work).await;
        client.complete(&properties).await?;
        progress.done();
        info!(
            message_id = %properties.message_id,
            delivery_count = properties.delivery_count,
            bytes,
            processed = progress.processed(),
            "processed message"
        );
    }
    info!(
        processed = progress.processed(),
        "servicebus worker drained"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_parses_endpoint_policy_and_entity_path() {
        let parsed: ConnectionString = "Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0;EntityPath=orders"
            .parse()
            .expect("parses");
        assert_eq!(parsed.endpoint, "https://demo.servicebus.windows.net");
        assert_eq!(parsed.key_name, "listen");
        assert_eq!(parsed.key, "c2VjcmV0");
        assert_eq!(parsed.entity_path.as_deref(), Some("orders"));
        assert!(!format!("{parsed:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn connection_string_without_key_is_rejected_naming_the_part() {
        let err = "Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=listen"
            .parse::<ConnectionString>()
            .expect_err("no key");
        assert!(err.to_string().contains("SharedAccessKey"), "{err}");
    }

    #[test]
    fn sas_token_has_the_documented_shape() {
        let token = sas_token(
            "https://demo.servicebus.windows.net/orders",
            "listen",
            "k",
            1_700_000_000,
        );
        assert!(
            token.starts_with(
                "SharedAccessSignature sr=https%3a%2f%2fdemo.servicebus.windows.net%2forders&sig="
            ),
            "{token}"
        );
        assert!(token.ends_with("&se=1700000000&skn=listen"), "{token}");
    }
}
