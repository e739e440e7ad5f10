//! SASL on the shared offset connections (`conn.rs`): SaslHandshake v1 then SaslAuthenticate
//! v0 frames (KIP-152), with PLAIN (RFC 4616) or SCRAM-SHA-256/512 (RFC 5802, RFC 7677).
//!
//! Only these mechanisms take the shared path; OAUTHBEARER and GSSAPI keep librdkafka's
//! per-group handle (which implements them), and MSK IAM is refused at parse time.
//! Credentials live in [`SecretString`]s and no message quotes them or the broker's SASL error
//! text (which may echo the user name).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};
use secrecy::{ExposeSecret, SecretString};

use super::wire::{self, WireError};

/// SaslHandshake API key.
pub(crate) const SASL_HANDSHAKE: i16 = 17;
/// SaslAuthenticate API key.
pub(crate) const SASL_AUTHENTICATE: i16 = 36;
/// Fewest PBKDF2 iterations accepted from a server (RFC 7677 §4 recommends ≥ 4096; Kafka's
/// floor is 4096): a hostile server cannot ask for a weak derivation.
const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted: a hostile server cannot make us burn CPU.
const MAX_ITERATIONS: u32 = 1_000_000;

/// A SASL mechanism the shared path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Mechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// From librdkafka's `sasl.mechanism` value.
    pub(crate) fn from_librdkafka(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Self::Plain),
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-512" => Some(Self::ScramSha512),
            _ => None,
        }
    }

    /// The name sent in SaslHandshake.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn algorithms(
        self,
    ) -> (
        hmac::Algorithm,
        pbkdf2::Algorithm,
        &'static digest::Algorithm,
    ) {
        match self {
            Self::ScramSha512 => (
                hmac::HMAC_SHA512,
                pbkdf2::PBKDF2_HMAC_SHA512,
                &digest::SHA512,
            ),
            _ => (
                hmac::HMAC_SHA256,
                pbkdf2::PBKDF2_HMAC_SHA256,
                &digest::SHA256,
            ),
        }
    }
}

/// SASL credentials of one client key.
#[derive(Clone)]
pub(crate) struct SaslAuth {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// `sasl.username`.
    pub username: SecretString,
    /// `sasl.password`.
    pub password: SecretString,
}

impl std::fmt::Debug for SaslAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslAuth")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// SaslHandshake v1 body.
pub(crate) fn handshake_request(mechanism: Mechanism) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    wire::put_str(&mut out, mechanism.name(), "sasl mechanism")?;
    Ok(out)
}

/// SaslHandshake response: error code, then the enabled mechanisms.
pub(crate) fn decode_handshake(body: &[u8]) -> Result<(), WireError> {
    let code = wire::Reader::new(body).i16("sasl handshake error code")?;
    if code != 0 {
        return Err(WireError::Kafka {
            api: "SaslHandshake",
            code,
        });
    }
    Ok(())
}

/// SaslAuthenticate v0 body: the auth bytes.
pub(crate) fn authenticate_request(auth_bytes: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(4 + auth_bytes.len());
    wire::put_len(&mut out, auth_bytes.len(), "sasl auth bytes")?;
    out.extend_from_slice(auth_bytes);
    Ok(out)
}

/// SaslAuthenticate v0 response: the server's auth bytes, or `Err(code)`.
pub(crate) fn decode_authenticate(body: &[u8]) -> Result<Result<Vec<u8>, i16>, WireError> {
    let mut r = wire::Reader::new(body);
    let code = r.i16("sasl authenticate error code")?;
    let _message = r.nullable_string("sasl authenticate error message")?;
    let bytes = r.bytes("sasl auth bytes")?;
    Ok(if code == 0 { Ok(bytes) } else { Err(code) })
}

/// `\0user\0password`.
pub(crate) fn plain_message(auth: &SaslAuth) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(auth.username.expose_secret().as_bytes());
    out.push(0);
    out.extend_from_slice(auth.password.expose_secret().as_bytes());
    out
}

/// A fresh client nonce: 24 random bytes, base64 (printable, no `,`).
pub(crate) fn client_nonce() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system randomness for the SCRAM nonce".to_owned())?;
    Ok(STANDARD.encode(bytes))
}

/// `saslname` escaping of RFC 5802 §5.1: `=` → `=3D`, `,` → `=2C`.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// One SCRAM exchange, client side.
pub(crate) struct Scram {
    mechanism: Mechanism,
    password: SecretString,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    /// Start with `nonce`; returns the client-first message (no channel binding: `n,,`).
    pub(crate) fn start(auth: &SaslAuth, nonce: String) -> (Self, String) {
        let bare = format!("n={},r={nonce}", sasl_name(auth.username.expose_secret()));
        let first = format!("n,,{bare}");
        let scram = Self {
            mechanism: auth.mechanism,
            password: auth.password.clone(),
            client_first_bare: bare,
            nonce,
            server_signature: None,
        };
        (scram, first)
    }

    /// The client-final message for `server_first` (`r=…,s=…,i=…`).
    pub(crate) fn client_final(&mut self, server_first: &str) -> Result<String, String> {
        let attr = |name: char| {
            server_first
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        if attr('m').is_some() {
            return Err("server requires an unsupported SCRAM extension".into());
        }
        let nonce = attr('r').ok_or("server-first message has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("server nonce does not extend the client nonce".into());
        }
        let salt = attr('s')
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or("server-first message has no valid salt")?;
        let iterations: u32 = attr('i')
            .and_then(|i| i.parse().ok())
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or("server-first message has an invalid iteration count")?;
        let (mac, kdf, hash) = self.mechanism.algorithms();
        let len = hash.output_len();
        let mut salted = vec![0u8; len];
        let rounds = std::num::NonZeroU32::new(iterations).ok_or("zero iterations")?;
        pbkdf2::derive(
            kdf,
            rounds,
            &salt,
            self.password.expose_secret().as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(mac, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(hash, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac::sign(
            &hmac::Key::new(mac, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(mac, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        self.server_signature = Some(server_signature.as_ref().to_vec());
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// The server signature the server-final message must carry (test servers send it).
    #[cfg(test)]
    pub(crate) fn server_signature(&self) -> Option<&[u8]> {
        self.server_signature.as_deref()
    }

    /// Check the server-final message (`v=…`): the server proves it knows the password too.
    pub(crate) fn verify(&self, server_final: &str) -> Result<(), String> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(format!("server rejected the proof ({e})"));
        }
        let got = server_final
            .strip_prefix("v=")
            .and_then(|v| {
                STANDARD
                    .decode(v.split(',').next().unwrap_or_default())
                    .ok()
            })
            .ok_or("server-final message has no verifier")?;
        match &self.server_signature {
            Some(want) if *want == got => Ok(()),
            _ => Err("server signature does not match".into()),
        }
    }
}

#[cfg(test)]
#[path = "sasl_tests.rs"]
mod tests;
