//! Who is asking (`spec/kubernetes.md` §2.5): the delegated authentication chain of a Go
//! extension API server, in its order.
//!
//! 1. Front proxy: the TLS peer chain verifies against `requestheader-client-ca-file` (client
//!    usage, validity) and its CN is allowed → the user named by the `X-Remote-*` headers.
//! 2. Client certificate against `client-ca-file` → CN is the user, O the groups.
//! 3. `Authorization: Bearer` → a TokenReview, cached 10 s under the token's SHA-256.
//! 4. Otherwise anonymous (`system:anonymous`, `system:unauthenticated`).
//!
//! As in Go's union authenticator, a method that fails (an unknown certificate, a CN that is
//! not allowed, a rejected token) does not stop later methods, but if none succeeds the
//! request is refused with 401 instead of falling back to anonymous. Identity headers are
//! removed from every request whatever the outcome, and `Authorization` once it has been
//! used, so handlers never see credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;

use super::auth_config::{AuthConfig, AuthConfigCell, RequestHeaderConfig};
use super::peer::PeerCertificates;

/// Group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Group of the anonymous user.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The anonymous user.
pub const ANONYMOUS: &str = "system:anonymous";
/// How long a TokenReview answer (either way) is reused.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
/// Upper bound of a TokenReview call.
pub const TOKEN_REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Cached token answers at most.
const TOKEN_CACHE_SIZE: usize = 4096;

/// An authenticated (or anonymous) user; a request extension after `secure`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct User {
    /// User name.
    pub name: String,
    /// UID (may be empty).
    pub uid: String,
    /// Groups, in order.
    pub groups: Vec<String>,
    /// Extra attributes (keys lowercase).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.into(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED.into()],
            extra: BTreeMap::new(),
        }
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS
    }

    /// Adds `system:authenticated` unless already there (or unauthenticated), as Go does.
    fn authenticated(mut self) -> Self {
        if !self
            .groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

/// A bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    fn digest(&self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes()).as_ref(),
        );
        out
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl std::fmt::Display for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Authentication failed: 401. The reasons are for logs (they never contain credentials).
#[derive(Debug, Clone, thiserror::Error)]
#[error("authentication failed: {}", .0.join("; "))]
pub struct AuthnError(pub Vec<String>);

fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The user the front proxy names in the headers; `None` without a user name header.
fn user_from_headers(rh: &RequestHeaderConfig, headers: &HeaderMap) -> Option<User> {
    let name = rh
        .username_headers
        .iter()
        .find_map(|h| values(headers, h).next())?
        .to_owned();
    let uid = rh
        .uid_headers
        .iter()
        .find_map(|h| values(headers, h).next())
        .unwrap_or_default()
        .to_owned();
    let groups = rh
        .group_headers
        .iter()
        .flat_map(|h| values(headers, h).map(str::to_owned))
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header, value) in headers {
        for prefix in &rh.extra_headers_prefixes {
            let Some(rest) = strip_prefix_ignore_case(header.as_str(), prefix) else {
                continue;
            };
            let key = percent_encoding::percent_decode_str(rest)
                .decode_utf8_lossy()
                .to_lowercase();
            if let Ok(value) = value.to_str() {
                extra.entry(key).or_default().push(value.to_owned());
            }
        }
    }
    Some(User {
        name,
        uid,
        groups,
        extra,
    })
}

/// `name` without `prefix`, compared ASCII-case-insensitively (header names are lowercase in
/// `http`; configured prefixes may be written in any case).
fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Whether `name` (lowercase) carries an identity: anything `X-Remote-*` or configured.
fn is_identity_header(config: &AuthConfig, name: &str) -> bool {
    if name.starts_with("x-remote-") {
        return true;
    }
    let Some(rh) = &config.request_header else {
        return false;
    };
    rh.username_headers
        .iter()
        .chain(&rh.group_headers)
        .chain(&rh.uid_headers)
        .any(|h| h.eq_ignore_ascii_case(name))
        || rh
            .extra_headers_prefixes
            .iter()
            .any(|p| strip_prefix_ignore_case(name, p).is_some())
}

/// Removes every identity header: the configured ones and anything `X-Remote-*`.
fn strip_identity_headers(config: &AuthConfig, headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity_header(config, name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

fn bearer(headers: &HeaderMap) -> Option<BearerToken> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| BearerToken::new(token))
}

type TokenAnswer = Result<User, String>;

/// Runs the chain; holds the TokenReview cache.
pub struct Authenticator {
    auth: Arc<AuthConfigCell>,
    client: kube::Client,
    tokens: Mutex<HashMap<[u8; 32], (Instant, TokenAnswer)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator reading the settings in `auth` and sending TokenReviews with `client`.
    pub fn new(auth: Arc<AuthConfigCell>, client: kube::Client) -> Self {
        Self {
            auth,
            client,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates a request from its TLS peer chain and headers; strips the identity
    /// headers (and a used `Authorization`) from `headers`.
    pub async fn authenticate(
        &self,
        headers: &mut HeaderMap,
        peer: &PeerCertificates,
    ) -> Result<User, AuthnError> {
        let config = self.auth.current();
        let mut errors = vec![];
        let leaf = peer.subject();
        if !peer.is_empty() && leaf.is_none() {
            errors.push("client certificate without a readable subject common name".to_owned());
        }
        if let (Some(rh), Some(leaf)) = (&config.request_header, leaf)
            && rh.cas.verifies(peer)
        {
            let cn = &leaf.common_name;
            if !rh.allowed_names.is_empty() && !rh.allowed_names.contains(cn) {
                errors.push(format!(
                    "client certificate CN {cn:?} is not an allowed front proxy"
                ));
            } else if let Some(user) = user_from_headers(rh, headers) {
                strip_identity_headers(&config, headers);
                return Ok(user.authenticated());
            }
        }
        strip_identity_headers(&config, headers);
        if let Some(leaf) = leaf {
            match &config.client_cas {
                Some(cas) if cas.verifies(peer) => {
                    return Ok(User {
                        name: leaf.common_name.clone(),
                        uid: String::new(),
                        groups: leaf.organizations.clone(),
                        extra: BTreeMap::new(),
                    }
                    .authenticated());
                }
                _ if errors.is_empty() => {
                    errors.push("client certificate signed by an unknown authority".into())
                }
                _ => {}
            }
        }
        if let Some(token) = bearer(headers) {
            match self.review(&token).await {
                Ok(user) => {
                    headers.remove(http::header::AUTHORIZATION);
                    return Ok(user.authenticated());
                }
                Err(reason) => errors.push(reason),
            }
        }
        if errors.is_empty() {
            Ok(User::anonymous())
        } else {
            Err(AuthnError(errors))
        }
    }

    /// The TokenReview answer for `token`, from the cache when fresh.
    async fn review(&self, token: &BearerToken) -> TokenAnswer {
        let key = token.digest();
        if let Some((at, answer)) = self.lock_tokens().get(&key)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return answer.clone();
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.0.clone()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = match tokio::time::timeout(
            TOKEN_REVIEW_TIMEOUT,
            api.create(&PostParams::default(), &review),
        )
        .await
        {
            // Failed calls are not cached: the next request asks again.
            Err(_) => return Err("TokenReview timed out".into()),
            Ok(Err(error)) => return Err(format!("TokenReview failed: {error}")),
            Ok(Ok(done)) => match done.status {
                Some(status) if status.authenticated == Some(true) => {
                    let user = status.user.unwrap_or_default();
                    Ok(User {
                        name: user.username.unwrap_or_default(),
                        uid: user.uid.unwrap_or_default(),
                        groups: user.groups.unwrap_or_default(),
                        extra: user.extra.unwrap_or_default().into_iter().collect(),
                    })
                }
                Some(status) => Err(format!(
                    "token rejected: {}",
                    status.error.unwrap_or_else(|| "not authenticated".into())
                )),
                None => Err("token rejected: TokenReview without status".into()),
            },
        };
        let mut tokens = self.lock_tokens();
        if tokens.len() >= TOKEN_CACHE_SIZE {
            tokens.retain(|_, (at, _)| at.elapsed() < TOKEN_CACHE_TTL);
            if tokens.len() >= TOKEN_CACHE_SIZE {
                tokens.clear();
            }
        }
        tokens.insert(key, (Instant::now(), answer.clone()));
        answer
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Instant, TokenAnswer)>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn rh() -> RequestHeaderConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        RequestHeaderConfig {
            cas: super::super::auth_config::TrustedCas::from_pem("test", &pem).unwrap(),
            allowed_names: vec![],
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefixes: vec!["X-Remote-Extra-".into()],
            uid_headers: vec!["X-Remote-Uid".into()],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn front_proxy_headers_give_user_groups_extras_and_uid() {
        let h = headers(&[
            ("X-Remote-User", ""),
            ("X-Remote-User", "alice"),
            ("X-Remote-Uid", "u-1"),
            ("X-Remote-Group", "a"),
            ("X-Remote-Group", "b"),
            (
                "X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id",
                "JTI=1",
            ),
            ("X-Remote-Extra-Scopes", "x"),
            ("X-Remote-Extra-Scopes", "y"),
        ]);
        let user = user_from_headers(&rh(), &h).unwrap().authenticated();
        assert_eq!(user.name, "alice");
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.groups, ["a", "b", AUTHENTICATED]);
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            ["JTI=1"]
        );
        assert_eq!(user.extra["scopes"], ["x", "y"]);
    }

    #[test]
    fn no_user_header_means_the_front_proxy_does_not_apply() {
        assert!(user_from_headers(&rh(), &headers(&[("X-Remote-Group", "a")])).is_none());
    }

    #[test]
    fn identity_headers_are_stripped_whatever_their_case() {
        let config = AuthConfig {
            request_header: Some(RequestHeaderConfig {
                username_headers: vec!["X-Custom-User".into()],
                ..rh()
            }),
            ..AuthConfig::default()
        };
        let mut h = headers(&[
            ("x-remote-user", "mallory"),
            ("X-Custom-User", "mallory"),
            ("X-Remote-Extra-Foo", "bar"),
            ("Accept", "application/json"),
        ]);
        strip_identity_headers(&config, &mut h);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn tokens_never_print() {
        let token = BearerToken::new("s3cr3t");
        assert!(!format!("{token:?} {token}").contains("s3cr3t"));
        let h = headers(&[("Authorization", "Bearer s3cr3t")]);
        assert_eq!(bearer(&h), Some(token));
        assert_eq!(bearer(&headers(&[("Authorization", "Basic abc")])), None);
    }
}
