//! AWS Signature Version 4 request signing (header form), for Amazon Managed Prometheus.
//!
//! Hand-written on `ring` (already a dependency) rather than pulling in the AWS SDK: the
//! algorithm is four small steps (canonical request, string to sign, derived key, signature;
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>). The query is
//! canonicalised as the Go SDK does (form-decoded, then re-encoded with `%20` for spaces and
//! sorted), so a URL built with Go's `QueryEscape` (`+` for space) signs the same way.
//! Checked against AWS's published SigV4 test-suite vectors (see the tests).

use std::fmt;
use std::time::SystemTime;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::Url;
use ring::{digest, hmac};
use secrecy::{ExposeSecret, SecretString};

/// The signing algorithm name.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name of Amazon Managed Service for Prometheus.
pub const PROMETHEUS_SERVICE: &str = "aps";

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (uppercase hex).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An access key pair, optionally with a session token. Never printed.
#[derive(Clone)]
pub struct AwsCredentials {
    /// `awsAccessKeyID` / `AWS_ACCESS_KEY_ID` (an identifier, not a secret).
    pub access_key_id: String,
    /// `awsSecretAccessKey` / `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: SecretString,
    /// `awsSessionToken` / `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What one request is signed for.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// AWS region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service name, e.g. `aps`.
    pub service: &'a str,
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for `time`.
pub fn amz_date(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace(['-', ':'], "")
}

/// The headers to add to a request for `method url` with `payload`: `x-amz-date`,
/// `x-amz-security-token` (with a session token) and `authorization`. `extra` are further
/// headers the request carries that should be signed too (name, value).
pub fn sign(
    creds: &AwsCredentials,
    scope: Scope<'_>,
    method: &str,
    url: &Url,
    extra: &[(String, String)],
    payload: &[u8],
    time: SystemTime,
) -> Vec<(String, SecretString)> {
    let date_time = amz_date(time);
    let mut headers: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), canonical_value(v)))
        .collect();
    headers.push(("host".to_owned(), host_header(url)));
    headers.push(("x-amz-date".to_owned(), date_time.clone()));
    if let Some(token) = &creds.session_token {
        headers.push((
            "x-amz-security-token".to_owned(),
            token.expose_secret().to_owned(),
        ));
    }
    headers.sort();
    let signature = signature(creds, scope, method, url, &headers, payload, &date_time);
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
        creds.access_key_id,
        &date_time[..8],
        scope.region,
        scope.service,
        signed.join(";"),
    );
    let mut out = vec![("x-amz-date".to_owned(), SecretString::from(date_time))];
    if let Some(token) = &creds.session_token {
        out.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    out.push((
        "authorization".to_owned(),
        SecretString::from(authorization),
    ));
    out
}

/// The hex signature over sorted, lower-cased `headers`.
fn signature(
    creds: &AwsCredentials,
    scope: Scope<'_>,
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    payload: &[u8],
    date_time: &str,
) -> String {
    let request = canonical_request(method, url, headers, payload);
    let date = &date_time[..8];
    let to_sign = format!(
        "{ALGORITHM}\n{date_time}\n{date}/{}/{}/aws4_request\n{}",
        scope.region,
        scope.service,
        hex(digest::digest(&digest::SHA256, request.as_bytes()).as_ref())
    );
    let secret = format!("AWS4{}", creds.secret_access_key.expose_secret());
    let mut key = secret.into_bytes();
    for part in [date, scope.region, scope.service, "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    hex(&mac(&key, to_sign.as_bytes()))
}

/// The canonical request: method, path, query, headers, signed header list, payload hash.
pub fn canonical_request(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    payload: &[u8],
) -> String {
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{}",
        canonical_path(url.path()),
        canonical_query(url.query().unwrap_or_default()),
        signed.join(";"),
        hex(digest::digest(&digest::SHA256, payload).as_ref())
    )
}

/// Each path segment decoded and re-encoded once (non-S3 services; `/` kept).
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|seg| {
            let raw: Vec<u8> = percent_decode_str(seg).collect();
            percent_encoding::percent_encode(&raw, UNRESERVED).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Pairs form-decoded (`+` is a space), re-encoded strictly and sorted by key, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&form_decode(k)), encode(&form_decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// `s` percent-encoded as SigV4 wants: RFC 3986 unreserved characters stay, everything else
/// becomes `%XX` (uppercase hex). Also the encoding of STS form bodies.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `host[:port]` as the client sends it (default ports omitted).
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Trimmed, with inner runs of spaces collapsed.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use rstest::rstest;

    use super::*;

    /// The test suite's credentials, scope and time (2015-08-30T12:36:00Z).
    fn suite_creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        }
    }

    const SUITE_SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };

    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn authorization(method: &str, url: &str, extra: &[(&str, &str)], payload: &[u8]) -> String {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let url = Url::parse(url).unwrap();
        let headers = sign(
            &suite_creds(),
            SUITE_SCOPE,
            method,
            &url,
            &extra,
            payload,
            suite_time(),
        );
        headers
            .into_iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.expose_secret().to_owned())
            .unwrap()
    }

    #[test]
    fn amz_date_is_compact_utc() {
        assert_eq!(amz_date(suite_time()), "20150830T123600Z");
    }

    /// AWS SigV4 test suite (aws-c-auth `tests/aws-sig-v4-test-suite`, as reproduced in
    /// awslabs/aws-crt-python `test/test_auth.py`): get-vanilla, get-utf8, and a POST with body
    /// `hello` signed with `content-length` and `x-amz-content-sha256`.
    #[rstest]
    #[case::get_vanilla(
        "GET",
        "https://example.amazonaws.com/",
        &[],
        b"" as &[u8],
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )]
    #[case::get_utf8(
        "GET",
        "https://example.amazonaws.com/\u{1234}",
        &[],
        b"",
        "host;x-amz-date",
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
    )]
    #[case::get_vanilla_query_order_key_case(
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        &[],
        b"",
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    )]
    #[case::post_body_with_content_sha256(
        "POST",
        "https://example.amazonaws.com/",
        &[
            ("Content-Length", "5"),
            ("X-Amz-Content-Sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        ],
        b"hello",
        "content-length;host;x-amz-content-sha256;x-amz-date",
        "8e17c5b22b7bb28da47f44b08691c087a0993d0965bfab053376360790d44d6c"
    )]
    fn matches_the_aws_sigv4_test_suite(
        #[case] method: &str,
        #[case] url: &str,
        #[case] extra: &[(&str, &str)],
        #[case] payload: &[u8],
        #[case] signed: &str,
        #[case] signature: &str,
    ) {
        assert_eq!(
            authorization(method, url, extra, payload),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={signed}, Signature={signature}"
            )
        );
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let mut creds = suite_creds();
        creds.session_token = Some(SecretString::from("tok"));
        let url = Url::parse("https://aps-workspaces.us-east-1.amazonaws.com/").unwrap();
        let headers = sign(&creds, SUITE_SCOPE, "GET", &url, &[], b"", suite_time());
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["x-amz-date", "x-amz-security-token", "authorization"]
        );
        let auth = headers[2].1.expose_secret();
        assert!(
            auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"),
            "{auth}"
        );
    }

    #[test]
    fn go_query_escape_and_percent_20_canonicalise_alike() {
        assert_eq!(
            canonical_query("query=up+%7Bjob%3D%22a%22%7D&b="),
            "b=&query=up%20%7Bjob%3D%22a%22%7D"
        );
        assert_eq!(
            canonical_query("query=up%20x"),
            canonical_query("query=up+x")
        );
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let mut creds = suite_creds();
        creds.session_token = Some(SecretString::from("session-secret"));
        let text = format!("{creds:?}");
        assert!(
            !text.contains("EXAMPLEKEY") && !text.contains("session-secret"),
            "{text}"
        );
    }
}
