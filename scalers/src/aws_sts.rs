//! Temporary AWS credentials from STS, as the AWS SDK's credential providers fetch them for
//! KEDA's AWS scalers:
//!
//! * **web identity (IRSA)**: `AssumeRoleWithWebIdentity` (unsigned) with the operator's
//!   `AWS_ROLE_ARN` and the token in `AWS_WEB_IDENTITY_TOKEN_FILE` (re-read on every refresh,
//!   the kubelet rotates it); session name `AWS_ROLE_SESSION_NAME`, else the Go SDK's default
//!   (the current Unix time in nanoseconds);
//! * **assume role** (`awsRoleArn`): `AssumeRole`, SigV4-signed (service `sts`) with base
//!   credentials (static keys or web identity); session name `aws-go-sdk-<unix nanos>` like the
//!   Go SDK's `stscreds.NewAssumeRoleProvider` that KEDA uses.
//!
//! Requests are form-encoded `POST`s to `https://sts.<region>.amazonaws.com/` (`.com.cn` for
//! `cn-*` regions), or to `AWS_ENDPOINT_URL_STS` when the operator sets it (the variable the
//! AWS SDKs honour). Credentials are cached until [`REFRESH_MARGIN`] before their
//! `Expiration` and shared by every trigger with the same identity. The response XML is read
//! by a small extractor ([`xml_text`]) for the four credential elements and the error
//! `Code`/`Message`; errors name the STS action and never contain keys or tokens.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use ring::digest;
use secrecy::{ExposeSecret, SecretString};

use crate::pool::Shared;
use crate::pool::http::{self, HttpClient, HttpKey, TlsSettings};
use crate::sigv4::{self, AwsCredentials};

/// SigV4 service name of STS.
pub const STS_SERVICE: &str = "sts";
/// The STS API version sent with every call.
pub const STS_VERSION: &str = "2011-06-15";
/// Operator env variable overriding the STS endpoint (honoured by the AWS SDKs too).
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_STS";
/// Cached credentials are refreshed this long before their `Expiration`.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Longest STS error message quoted in an error.
const MAX_MESSAGE: usize = 300;

const FORM: &str = "application/x-www-form-urlencoded";

/// Credentials a request is signed with: fixed keys, or a cached STS provider.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Static keys (authParams or the operator's `AWS_ACCESS_KEY_ID`…).
    Static(AwsCredentials),
    /// Temporary credentials from STS.
    Sts(Arc<StsCredentials>),
}

impl Credentials {
    /// Valid credentials, fetched from STS only when the cached ones are missing or close to
    /// expiry; the calls to STS finish by `deadline`.
    pub async fn get(&self, deadline: Instant) -> Result<AwsCredentials, String> {
        match self {
            Credentials::Static(c) => Ok(c.clone()),
            Credentials::Sts(s) => s.credentials(deadline).await,
        }
    }

    /// Drop cached STS credentials (after the service rejected a request).
    pub async fn forget(&self) {
        if let Credentials::Sts(s) = self {
            s.forget().await;
        }
    }

    /// Identity for sharing providers; secrets enter only as a truncated SHA-256.
    fn key(&self) -> String {
        match self {
            Credentials::Static(c) => {
                let mut material = c.secret_access_key.expose_secret().to_owned();
                if let Some(t) = &c.session_token {
                    material.push('\n');
                    material.push_str(t.expose_secret());
                }
                let hash = digest::digest(&digest::SHA256, material.as_bytes());
                let short: String = hash.as_ref()[..12]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("static:{}:{short}", c.access_key_id)
            }
            Credentials::Sts(s) => s.key.clone(),
        }
    }
}

/// What an [`StsCredentials`] asks STS for.
#[derive(Debug)]
enum Call {
    WebIdentity {
        role_arn: String,
        token_file: PathBuf,
        session_name: Option<String>,
    },
    AssumeRole {
        role_arn: String,
        session_name: String,
        base: Credentials,
    },
}

impl Call {
    fn action(&self) -> &'static str {
        match self {
            Call::WebIdentity { .. } => "AssumeRoleWithWebIdentity",
            Call::AssumeRole { .. } => "AssumeRole",
        }
    }

    fn role_arn(&self) -> &str {
        match self {
            Call::WebIdentity { role_arn, .. } | Call::AssumeRole { role_arn, .. } => role_arn,
        }
    }
}

/// Live providers by identity key.
static PROVIDERS: LazyLock<Mutex<HashMap<String, Weak<StsCredentials>>>> =
    LazyLock::new(Default::default);

/// Temporary credentials from one STS call, cached and shared per identity.
pub struct StsCredentials {
    key: String,
    region: String,
    endpoint: Url,
    call: Call,
    http: Shared<HttpKey, HttpClient>,
    cache: tokio::sync::Mutex<Option<(AwsCredentials, Instant)>>,
}

impl fmt::Debug for StsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsCredentials")
            .field("action", &self.call.action())
            .field("role_arn", &self.call.role_arn())
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

/// The STS endpoint for `region`: `AWS_ENDPOINT_URL_STS` from `env`, else the regional one.
pub fn endpoint(region: &str, env: &BTreeMap<String, String>) -> Result<Url, String> {
    if let Some(custom) = env
        .get(ENDPOINT_ENV)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        let url =
            Url::parse(custom).map_err(|e| format!("{ENDPOINT_ENV} is not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{ENDPOINT_ENV} must be an http(s) URL"));
        }
        return Ok(url);
    }
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!("awsRegion {region:?} is not a valid AWS region"));
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Url::parse(&format!("https://sts.{region}.{suffix}/"))
        .map_err(|e| format!("awsRegion {region:?}: invalid STS endpoint: {e}"))
}

fn env_value<'a>(env: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

impl StsCredentials {
    /// The operator's web identity (IRSA) from `AWS_WEB_IDENTITY_TOKEN_FILE` and
    /// `AWS_ROLE_ARN` in `env`; `None` when no token file is configured. No I/O.
    pub fn web_identity(
        region: &str,
        env: &BTreeMap<String, String>,
        tls: &TlsSettings,
    ) -> Result<Option<Arc<Self>>, String> {
        let Some(token_file) = env_value(env, "AWS_WEB_IDENTITY_TOKEN_FILE") else {
            return Ok(None);
        };
        let role_arn = env_value(env, "AWS_ROLE_ARN").ok_or_else(|| {
            "podIdentity aws: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not".to_owned()
        })?;
        let endpoint = endpoint(region, env)?;
        let key = format!(
            "web-identity|{endpoint}|{region}|{role_arn}|{token_file}|{}",
            env_value(env, "AWS_ROLE_SESSION_NAME").unwrap_or_default()
        );
        let call = Call::WebIdentity {
            role_arn: role_arn.to_owned(),
            token_file: PathBuf::from(token_file),
            session_name: env_value(env, "AWS_ROLE_SESSION_NAME").map(str::to_owned),
        };
        Self::shared(key, region, endpoint, call, tls).map(Some)
    }

    /// `AssumeRole` of `role_arn` (`awsRoleArn`) with `base` credentials. No I/O.
    pub fn assume_role(
        region: &str,
        role_arn: &str,
        base: Credentials,
        env: &BTreeMap<String, String>,
        tls: &TlsSettings,
    ) -> Result<Arc<Self>, String> {
        let role_arn = role_arn.trim();
        if role_arn.is_empty() {
            return Err("authParams \"awsRoleArn\" is empty".to_owned());
        }
        let endpoint = endpoint(region, env)?;
        let key = format!("assume-role|{endpoint}|{region}|{role_arn}|{}", base.key());
        let call = Call::AssumeRole {
            role_arn: role_arn.to_owned(),
            session_name: format!("aws-go-sdk-{}", unix_nanos()),
            base,
        };
        Self::shared(key, region, endpoint, call, tls)
    }

    fn shared(
        key: String,
        region: &str,
        endpoint: Url,
        call: Call,
        tls: &TlsSettings,
    ) -> Result<Arc<Self>, String> {
        let mut providers = PROVIDERS.lock().unwrap_or_else(|e| e.into_inner());
        providers.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = providers.get(&key).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        let http = http::acquire(&endpoint, tls)?;
        let provider = Arc::new(Self {
            key: key.clone(),
            region: region.to_owned(),
            endpoint,
            call,
            http,
            cache: Default::default(),
        });
        providers.insert(key, Arc::downgrade(&provider));
        Ok(provider)
    }

    /// Drop the cached credentials.
    pub async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    /// Valid credentials, from the cache unless missing or within [`REFRESH_MARGIN`] of
    /// expiry (when that refresh fails, unexpired cached credentials are still used).
    /// Concurrent callers wait for one STS call.
    pub async fn credentials(&self, deadline: Instant) -> Result<AwsCredentials, String> {
        let mut cached = self.cache.lock().await;
        if let Some((creds, expires)) = cached.as_ref()
            && Instant::now() + REFRESH_MARGIN < *expires
        {
            return Ok(creds.clone());
        }
        match self.fetch(deadline).await {
            Ok((creds, expires)) => {
                *cached = Some((creds.clone(), expires));
                Ok(creds)
            }
            // Early refresh failed, but the cached credentials are still valid: keep using
            // them and retry on the next call.
            Err(e) => match cached.as_ref() {
                Some((creds, expires)) if Instant::now() < *expires => {
                    tracing::warn!(error = %e, "STS refresh failed; using unexpired credentials");
                    Ok(creds.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// One STS call.
    async fn fetch(&self, deadline: Instant) -> Result<(AwsCredentials, Instant), String> {
        let action = self.call.action();
        let step = format!("sts {action} for role {}", self.call.role_arn());
        // Secret values that must never reach an error message.
        let mut secrets: Vec<SecretString> = Vec::new();
        let mut form: Vec<(&str, String)> = vec![
            ("Action", action.to_owned()),
            ("Version", STS_VERSION.to_owned()),
            ("RoleArn", self.call.role_arn().to_owned()),
        ];
        let mut signing = None;
        match &self.call {
            Call::WebIdentity {
                token_file,
                session_name,
                ..
            } => {
                let token = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    format!(
                        "{step}: cannot read AWS_WEB_IDENTITY_TOKEN_FILE {}: {e}",
                        token_file.display()
                    )
                })?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(format!(
                        "{step}: AWS_WEB_IDENTITY_TOKEN_FILE {} is empty",
                        token_file.display()
                    ));
                }
                secrets.push(SecretString::from(token.to_owned()));
                let session = session_name
                    .clone()
                    .unwrap_or_else(|| unix_nanos().to_string());
                form.push(("RoleSessionName", session));
                form.push(("WebIdentityToken", token.to_owned()));
            }
            Call::AssumeRole {
                session_name, base, ..
            } => {
                let base = Box::pin(base.get(deadline))
                    .await
                    .map_err(|e| format!("{step}: base credentials: {e}"))?;
                secrets.push(base.secret_access_key.clone());
                if let Some(t) = &base.session_token {
                    secrets.push(t.clone());
                }
                form.push(("RoleSessionName", session_name.clone()));
                signing = Some(base);
            }
        }
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", sigv4::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{step}: timed out"));
        }
        let mut request = self
            .http
            .client()
            .reqwest()
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, FORM);
        if let Some(base) = &signing {
            let headers = sigv4::sign(
                base,
                sigv4::Scope {
                    region: &self.region,
                    service: STS_SERVICE,
                },
                "POST",
                &self.endpoint,
                &[("content-type".to_owned(), FORM.to_owned())],
                body.as_bytes(),
                SystemTime::now(),
            );
            for (name, value) in headers {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{step}: invalid signing header name"))?;
                let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                    format!("{step}: credential for {name} is not a valid header value")
                })?;
                value.set_sensitive(true);
                request = request.header(name, value);
            }
        }
        let (status, reply) = self
            .http
            .client()
            .send(request.body(body), left)
            .await
            .map_err(|e| format!("{step}: {e}"))?;
        if !status.is_success() {
            let code = xml_text(&reply, "Code").unwrap_or_default();
            let message = xml_text(&reply, "Message").unwrap_or_default();
            let detail = match (code.is_empty(), message.is_empty()) {
                (true, true) => String::new(),
                (false, true) => format!(": {code}"),
                (true, false) => format!(": {message}"),
                (false, false) => format!(": {code}: {message}"),
            };
            return Err(scrub(
                format!("{step}: HTTP {}{detail}", status.as_u16()),
                &secrets,
            ));
        }
        parse_credentials(&reply).map_err(|e| scrub(format!("{step}: {e}"), &secrets))
    }
}

/// `message` with every secret replaced and quoted text cut to a sane length.
fn scrub(message: String, secrets: &[SecretString]) -> String {
    let mut out = message;
    for s in secrets {
        let s = s.expose_secret();
        if !s.is_empty() {
            out = out.replace(s, "<redacted>");
        }
    }
    if out.chars().count() > MAX_MESSAGE {
        out = out.chars().take(MAX_MESSAGE).collect::<String>() + "…";
    }
    out
}

/// The `<Credentials>` of an `AssumeRole*` response and when they expire (as an [`Instant`]).
pub fn parse_credentials(xml: &str) -> Result<(AwsCredentials, Instant), String> {
    let creds = xml_inner(xml, "Credentials")
        .ok_or_else(|| "response has no Credentials element".to_owned())?;
    let field = |name: &str| {
        xml_text(creds, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("response Credentials have no {name}"))
    };
    let access_key_id = field("AccessKeyId")?;
    let secret = field("SecretAccessKey")?;
    let token = field("SessionToken")?;
    let expiration = field("Expiration")?;
    let expires = humantime::parse_rfc3339_weak(expiration.trim_end_matches('Z'))
        .map_err(|_| format!("response Expiration {expiration:?} is not an RFC 3339 time"))?;
    let lifetime = expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Ok((
        AwsCredentials {
            access_key_id,
            secret_access_key: SecretString::from(secret),
            session_token: Some(SecretString::from(token)),
        },
        Instant::now() + lifetime,
    ))
}

/// The raw content of the first `<name>` element (attributes allowed, no namespace prefix),
/// or `""` for `<name/>`.
pub fn xml_inner<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(pos) = xml[from..].find(&open) {
        let after = from + pos + open.len();
        let rest = &xml[after..];
        match rest.chars().next() {
            Some('>') | Some('/') => {}
            Some(c) if c.is_whitespace() => {}
            _ => {
                from = after;
                continue;
            }
        }
        let end_of_tag = rest.find('>')?;
        if rest[..end_of_tag].trim_end().ends_with('/') {
            return Some("");
        }
        let content_start = after + end_of_tag + 1;
        let close = format!("</{name}");
        let mut search = content_start;
        while let Some(c) = xml[search..].find(&close) {
            let close_at = search + c;
            let tail = &xml[close_at + close.len()..];
            if tail.trim_start().starts_with('>') {
                return Some(&xml[content_start..close_at]);
            }
            search = close_at + close.len();
        }
        return None;
    }
    None
}

/// The text of the first `<name>` element: trimmed, CDATA unwrapped, entities decoded.
pub fn xml_text(xml: &str, name: &str) -> Option<String> {
    let inner = xml_inner(xml, name)?.trim();
    if let Some(cdata) = inner
        .strip_prefix("<![CDATA[")
        .and_then(|s| s.strip_suffix("]]>"))
    {
        return Some(cdata.to_owned());
    }
    Some(unescape(inner))
}

/// XML's five named entities and numeric character references; anything else stays as is.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').and_then(|semi| {
            let entity = &tail[1..semi];
            let ch = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:keda:keda-operator</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>tok&amp;en/+=</SessionToken>
      <SecretAccessKey>
        se&lt;cret&#x41;&#66;
      </SecretAccessKey>
      <Expiration>2999-01-01T00:00:00Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    </Credentials>
    <AccessKeyIdNot>x</AccessKeyIdNot>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn parses_the_four_credential_elements() {
        let (c, expires) = parse_credentials(REPLY).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key.expose_secret(), "se<cretAB");
        assert_eq!(
            c.session_token.as_ref().unwrap().expose_secret(),
            "tok&en/+="
        );
        assert!(expires > Instant::now() + Duration::from_secs(86400 * 365));
    }

    #[test]
    fn fractional_expiration_and_past_expiration() {
        let xml = "<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>\
                   <SessionToken>T</SessionToken><Expiration>2001-07-15T23:28:33.359Z</Expiration>\
                   </Credentials>";
        let (_, expires) = parse_credentials(xml).unwrap();
        assert!(expires <= Instant::now());
    }

    #[test]
    fn missing_or_bad_elements_are_named_without_values() {
        let xml = "<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>hush</SecretAccessKey>\
                   <Expiration>soon</Expiration></Credentials>";
        let err = parse_credentials(xml).unwrap_err();
        assert_eq!(err, "response Credentials have no SessionToken");
        let xml = xml.replace("<Expiration>", "<SessionToken>t</SessionToken><Expiration>");
        let err = parse_credentials(&xml).unwrap_err();
        assert!(err.contains("Expiration") && !err.contains("hush"), "{err}");
        assert!(parse_credentials("<html>nope</html>").is_err());
        assert!(parse_credentials("").is_err());
    }

    #[test]
    fn extractor_edge_cases() {
        assert_eq!(xml_inner("<Code/>", "Code"), Some(""));
        assert_eq!(xml_inner("<Code a=\"1\">x</Code >", "Code"), Some("x"));
        assert_eq!(
            xml_inner("<CodeX>y</CodeX><Code>x</Code>", "Code"),
            Some("x")
        );
        assert_eq!(xml_inner("<Code>unterminated", "Code"), None);
        assert_eq!(xml_inner("<Code", "Code"), None);
        assert_eq!(
            xml_text("<M><![CDATA[a &amp; <b>]]></M>", "M").as_deref(),
            Some("a &amp; <b>")
        );
        assert_eq!(
            xml_text("<M>&bogus; &#xZZ; & &#128512;</M>", "M").as_deref(),
            Some("&bogus; &#xZZ; & 😀")
        );
    }

    #[test]
    fn endpoints() {
        let env = BTreeMap::new();
        assert_eq!(
            endpoint("eu-west-1", &env).unwrap().as_str(),
            "https://sts.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            endpoint("cn-north-1", &env).unwrap().as_str(),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        assert!(endpoint("evil.com/x", &env).is_err());
        let env = BTreeMap::from([(ENDPOINT_ENV.to_owned(), "http://127.0.0.1:1/".to_owned())]);
        assert_eq!(
            endpoint("x y", &env).unwrap().as_str(),
            "http://127.0.0.1:1/"
        );
        let env = BTreeMap::from([(ENDPOINT_ENV.to_owned(), "ftp://h/".to_owned())]);
        assert!(endpoint("eu-west-1", &env).is_err());
    }

    #[test]
    fn scrub_redacts_and_truncates() {
        let s = scrub(
            "bad token abc123 here".to_owned(),
            &[SecretString::from("abc123")],
        );
        assert_eq!(s, "bad token <redacted> here");
        assert!(scrub("x".repeat(1000), &[]).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn static_keys_share_by_fingerprint_not_value() {
        let c = |secret: &str| {
            Credentials::Static(AwsCredentials {
                access_key_id: "AKID".into(),
                secret_access_key: SecretString::from(secret.to_owned()),
                session_token: None,
            })
        };
        assert_eq!(c("one").key(), c("one").key());
        assert_ne!(c("one").key(), c("two").key());
        assert!(!c("one").key().contains("one"));
    }
}
