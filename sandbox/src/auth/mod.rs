//! Authentication: who is calling.
//!
//! Three ways in, as on a real API server: a bearer token the sandbox issued (the admin token,
//! per-user tokens and ServiceAccount tokens), a client certificate signed by the client CA
//! (user = Subject CN, groups = Subject O), or nothing (`system:anonymous`). Every authenticated
//! user also gets `system:authenticated`. [`rbac`] then decides what the user may do, and
//! [`reviews`] answers TokenReview and SubjectAccessReview with the same two pieces.

pub mod rbac;
pub mod reviews;

use std::collections::HashMap;
use std::sync::RwLock;

use rustls::pki_types::CertificateDer;

/// An authenticated (or anonymous) user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// UID, if any.
    pub uid: String,
    /// Groups, including `system:authenticated` for everyone but anonymous.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with groups; `system:authenticated` is added.
    pub fn new(name: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            name: name.to_owned(),
            uid: String::new(),
            groups,
        }
    }

    /// `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// The user of a ServiceAccount token.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        let ns_group = format!("system:serviceaccounts:{namespace}");
        Self::new(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &["system:serviceaccounts", &ns_group],
        )
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }

    /// Whether the user is in `system:masters` (always allowed).
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// The identity a TLS client certificate carries (already verified by rustls).
pub fn user_from_certificate(cert: &CertificateDer<'_>) -> Option<UserInfo> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let orgs: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    Some(UserInfo::new(&cn, &orgs))
}

/// A bearer token the sandbox never issued (401 Unauthorized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid bearer token")]
pub struct InvalidToken;

/// Bearer tokens the sandbox recognises.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: RwLock<HashMap<String, UserInfo>>,
}

impl Authenticator {
    /// Registers a token for a user.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), user);
    }

    /// Issues a new random token for a user.
    pub fn issue_token(&self, user: UserInfo) -> String {
        let token = format!("sandbox-{}", uuid::Uuid::new_v4().simple());
        self.add_token(&token, user);
        token
    }

    /// The user a token belongs to.
    pub fn user_for_token(&self, token: &str) -> Option<UserInfo> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// Authenticates a request from its `Authorization` header and TLS peer identity.
    /// An unknown token is an error (401), never a fallback to anonymous.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        peer: Option<&UserInfo>,
    ) -> Result<UserInfo, InvalidToken> {
        if let Some(token) = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
        {
            return self.user_for_token(token).ok_or(InvalidToken);
        }
        Ok(peer.cloned().unwrap_or_else(UserInfo::anonymous))
    }
}
