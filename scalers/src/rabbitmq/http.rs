//! The management HTTP API side of the RabbitMQ scaler (spec/scalers.md §2.4): URL layout
//! (path prefix and vhost from `host`), Basic, OAuth2 or Azure AD (workload identity) bearer
//! auth, regex aggregation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::params::{OAuth, endpoint_params};
use super::{QueueInfo, Trigger, backend_error, config_error, host_url, tls_settings};
use crate::ScalerError;
use crate::azure_ad::TokenSource;
use crate::naming::query_escape;
use crate::pool::http::{HttpClient, HttpKey, TlsSettings, acquire};
use crate::pool::{Shared, mask_userinfo};

/// Longest part of an error body quoted in a message.
const MAX_QUOTED_BODY: usize = 512;

/// A pooled client plus what every request of this trigger needs.
#[derive(Debug)]
pub(super) struct Api {
    client: Shared<HttpKey, HttpClient>,
    /// `{scheme}://{host}{prefix}/api/queues{/vhost}`, without userinfo.
    queues_url: String,
    auth: Credentials,
}

#[derive(Debug)]
enum Credentials {
    None,
    Basic(String, SecretString),
    OAuth(Box<OAuthClient>),
    /// Azure AD token for `workloadIdentityResource` (shared with other triggers).
    Azure(Arc<TokenSource>),
}

/// The AAD scope of an audience, as KEDA's `getScopedResource`: `<resource>/.default` unless
/// it already ends in `.default` (a trailing `/` is dropped first).
pub(super) fn scoped_resource(resource: &str) -> String {
    let resource = resource.trim_end_matches('/');
    if resource.ends_with(".default") {
        resource.to_owned()
    } else {
        format!("{resource}/.default")
    }
}

/// `{prefix}/api/queues{/vhost}` for the raw (still-encoded) `path` of `host`.
pub(super) fn queues_path(raw_path: &str, vhost_name: Option<&str>) -> String {
    let segments: Vec<&str> = raw_path.split('/').collect();
    let (vhost, prefix) = match segments.split_last() {
        Some((last, rest)) => (last.to_string(), rest.join("/")),
        None => (String::new(), String::new()),
    };
    let vhost = match vhost_name {
        Some(name) => query_escape(name),
        None => vhost,
    };
    let vhost = if vhost.is_empty() || vhost == "/" {
        "%2F".to_owned()
    } else {
        vhost
    };
    format!("{prefix}/api/queues/{vhost}")
}

impl Api {
    /// `azure`: the token source for `workloadIdentityResource`, when the trigger has one.
    pub(super) fn new(
        trigger: &Trigger,
        azure: Option<Arc<TokenSource>>,
    ) -> Result<Self, ScalerError> {
        let url = host_url(trigger)?;
        let tls = tls_settings(trigger);
        let client = acquire(&url, &tls).map_err(config_error)?;
        // As in KEDA, the Azure bearer replaces any Basic userinfo of `host`.
        let auth = if let Some(source) = azure {
            Credentials::Azure(source)
        } else if let Some(oauth) = &trigger.oauth {
            Credentials::OAuth(Box::new(OAuthClient::new(oauth, &tls)?))
        } else if let Some((user, pass)) = &trigger.credentials {
            Credentials::Basic(user.expose_secret().to_owned(), pass.clone())
        } else if !url.username().is_empty() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let pass = decode(url.password().unwrap_or_default());
            Credentials::Basic(decode(url.username()), SecretString::from(pass))
        } else {
            Credentials::None
        };
        let queues_url = format!(
            "{}{}",
            url.origin().ascii_serialization(),
            queues_path(url.path(), trigger.vhost_name.as_deref())
        );
        Ok(Self {
            client,
            queues_url,
            auth,
        })
    }

    pub(super) fn release(&self) {
        self.client.release();
        if let Credentials::OAuth(oauth) = &self.auth {
            oauth.client.release();
        }
    }

    /// One GET of the queue (or of the regex matches) and the figures of spec §2.4.
    pub(super) async fn queue_info(
        &self,
        trigger: &Trigger,
        timeout: Duration,
    ) -> Result<QueueInfo, ScalerError> {
        let queue = query_escape(&trigger.queue_name);
        let url = if trigger.use_regex {
            format!(
                "{}?page=1&use_regex=true&pagination=false&name={queue}&page_size={}",
                self.queues_url, trigger.page_size
            )
        } else {
            format!("{}/{queue}", self.queues_url)
        };
        let parsed = Url::parse(&url).map_err(backend_error)?;
        let request = self.client.client().reqwest().get(parsed);
        let request = match &self.auth {
            Credentials::None => request,
            Credentials::Basic(user, pass) => request.basic_auth(user, Some(pass.expose_secret())),
            Credentials::OAuth(oauth) => {
                request.bearer_auth(oauth.token(timeout).await?.expose_secret())
            }
            Credentials::Azure(source) => {
                let deadline = Instant::now() + crate::pool::effective_timeout(timeout);
                let token = source.token(deadline).await.map_err(backend_error)?;
                request.bearer_auth(token.expose_secret())
            }
        };
        let (status, body) = self
            .client
            .client()
            .send(request, timeout)
            .await
            .map_err(backend_error)?;
        if status == reqwest::StatusCode::UNAUTHORIZED
            && let Credentials::Azure(source) = &self.auth
        {
            source.forget().await;
        }
        if status != reqwest::StatusCode::OK {
            return Err(backend_error(format!(
                "error requesting RabbitMQ API status: {status}, response: {}, from: {url}",
                truncate(&body)
            )));
        }
        let exclude = trigger.exclude_unacknowledged;
        if trigger.use_regex {
            let page: Page = serde_json::from_str(&body).map_err(decode_error)?;
            if page.page_count > 1 {
                return Err(backend_error(
                    "regex matches more queues than can be recovered at once",
                ));
            }
            aggregate(&page.items, &trigger.operation, exclude)
        } else {
            let queue: QueueJson = serde_json::from_str(&body).map_err(decode_error)?;
            Ok(queue.info(exclude))
        }
    }
}

fn decode_error(e: serde_json::Error) -> ScalerError {
    backend_error(format!("cannot decode RabbitMQ API response: {e}"))
}

fn truncate(body: &str) -> String {
    let body = mask_userinfo(body);
    match body.char_indices().nth(MAX_QUOTED_BODY) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body,
    }
}

/// The regex listing: `{items:[queue…], page_count}`.
#[derive(Debug, Deserialize)]
pub(super) struct Page {
    #[serde(default)]
    pub(super) items: Vec<QueueJson>,
    #[serde(default)]
    pub(super) page_count: i64,
}

/// The queue fields read; missing ones count as 0.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct QueueJson {
    messages: i64,
    messages_ready: i64,
    messages_unacknowledged: i64,
    message_stats: Stats,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stats {
    publish_details: Rate,
    deliver_get_details: Rate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Rate {
    rate: f64,
}

impl QueueJson {
    fn info(&self, exclude_unacknowledged: bool) -> QueueInfo {
        QueueInfo {
            messages: if exclude_unacknowledged {
                self.messages_ready
            } else {
                self.messages
            },
            publish_rate: self.message_stats.publish_details.rate,
            deliver_rate: self.message_stats.deliver_get_details.rate,
        }
    }
}

/// `sum`, `avg` (integer division for counts) or `max` (per field, from 0) over the matches.
pub(super) fn aggregate(
    items: &[QueueJson],
    operation: &str,
    exclude_unacknowledged: bool,
) -> Result<QueueInfo, ScalerError> {
    if items.is_empty() {
        return Ok(QueueInfo::default());
    }
    let infos = items.iter().map(|q| q.info(exclude_unacknowledged));
    let sum = infos
        .clone()
        .fold(QueueInfo::default(), |acc, q| QueueInfo {
            messages: acc.messages.saturating_add(q.messages),
            publish_rate: acc.publish_rate + q.publish_rate,
            deliver_rate: acc.deliver_rate + q.deliver_rate,
        });
    match operation {
        "sum" => Ok(sum),
        "avg" => {
            // `items` is non-empty and a Vec length always fits in i64.
            let n = items.len() as i64;
            Ok(QueueInfo {
                messages: sum.messages / n,
                publish_rate: sum.publish_rate / n as f64,
                deliver_rate: sum.deliver_rate / n as f64,
            })
        }
        "max" => Ok(infos.fold(QueueInfo::default(), |acc, q| QueueInfo {
            messages: acc.messages.max(q.messages),
            publish_rate: acc.publish_rate.max(q.publish_rate),
            deliver_rate: acc.deliver_rate.max(q.deliver_rate),
        })),
        other => Err(config_error(format!(
            "operation {other:?} is not supported: must be one of sum, max, avg"
        ))),
    }
}

/// OAuth2 client credentials with a cached token, refreshed shortly before it expires.
#[derive(Debug)]
struct OAuthClient {
    client: Shared<HttpKey, HttpClient>,
    token_url: Url,
    form: Vec<(String, SecretString)>,
    cached: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl OAuthClient {
    fn new(oauth: &OAuth, tls: &TlsSettings) -> Result<Self, ScalerError> {
        let token_url = Url::parse(&oauth.token_uri)
            .map_err(|e| config_error(format!("parameter \"oauthTokenURI\" is not a URL: {e}")))?;
        let client = acquire(&token_url, tls).map_err(config_error)?;
        let mut form = vec![
            (
                "grant_type".to_owned(),
                SecretString::from("client_credentials"),
            ),
            (
                "client_id".to_owned(),
                SecretString::from(oauth.client_id.clone()),
            ),
            ("client_secret".to_owned(), oauth.client_secret.clone()),
        ];
        if !oauth.scopes.is_empty() {
            form.push((
                "scope".to_owned(),
                SecretString::from(oauth.scopes.join(" ")),
            ));
        }
        for (k, v) in endpoint_params(oauth) {
            form.push((k, SecretString::from(v)));
        }
        Ok(Self {
            client,
            token_url,
            form,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    async fn token(&self, timeout: Duration) -> Result<SecretString, ScalerError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + Duration::from_secs(30) < *expires
        {
            return Ok(token.clone());
        }
        let form: Vec<(&str, &str)> = self
            .form
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        let request = self
            .client
            .client()
            .reqwest()
            .post(self.token_url.clone())
            .form(&form);
        let (status, body) = self
            .client
            .client()
            .send(request, timeout)
            .await
            .map_err(backend_error)?;
        if !status.is_success() {
            return Err(backend_error(format!(
                "OAuth2 token request failed: status {status}"
            )));
        }
        let response: TokenResponse = serde_json::from_str(&body)
            .map_err(|_| backend_error("OAuth2 token response has no access_token"))?;
        let lifetime = Duration::from_secs(response.expires_in.unwrap_or(3600));
        let token = SecretString::from(response.access_token);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}
