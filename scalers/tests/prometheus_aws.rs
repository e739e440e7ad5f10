//! Amazon Managed Prometheus with STS credentials (spec/scalers.md §5.2): IRSA web identity
//! (`AssumeRoleWithWebIdentity` with the operator's `AWS_ROLE_ARN` and token file) and
//! `awsRoleArn` (`AssumeRole`, SigV4-signed with the base credentials). A local HTTP server,
//! reached through `AWS_ENDPOINT_URL_STS`, plays STS (recomputing every `AssumeRole`
//! signature) and Amazon Managed Prometheus (recomputing every query signature and checking
//! `X-Amz-Security-Token` against the credentials STS issued).

#![cfg(feature = "prometheus")]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tidescale_scalers::prometheus::{self, Options};
use tidescale_scalers::sigv4::{self, AwsCredentials};
use tidescale_scalers::{PodIdentity, ScalerConfig};

const REGION: &str = "eu-west-1";
const ROLE_IRSA: &str = "arn:aws:iam::111122223333:role/keda-operator";
const ROLE_TARGET: &str = "arn:aws:iam::444455556666:role/amp-reader";
const BASE_ID: &str = "AKIDBASE";
const BASE_SECRET: &str = "base-secret-value";
const SAMPLE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}"#;

/// Grouped so `cargo test prometheus` selects them.
mod prometheus_aws {
    use super::*;

    /// One STS call as received.
    #[derive(Debug, Clone)]
    struct StsCall {
        form: HashMap<String, String>,
        authorization: Option<String>,
    }

    /// The stand-in's state.
    struct Fake {
        /// Every STS call, in order.
        sts: Mutex<Vec<StsCall>>,
        /// Secret and session token of every access key the stand-in knows.
        keys: Mutex<HashMap<String, (String, Option<String>)>>,
        /// Lifetime of issued credentials, seconds.
        lifetime: AtomicU64,
        /// Answer STS with an error.
        fail: AtomicBool,
        /// Access key ids and tokens the query endpoint saw.
        queries: Mutex<Vec<(String, String)>>,
        /// Problems the stand-in found (asserted empty).
        problems: Mutex<Vec<String>>,
    }

    impl Fake {
        fn sts_calls(&self, action: &str) -> Vec<StsCall> {
            let calls = self.sts.lock().unwrap();
            calls
                .iter()
                .filter(|c| c.form.get("Action").map(String::as_str) == Some(action))
                .cloned()
                .collect()
        }

        fn problem(&self, p: String) {
            self.problems.lock().unwrap().push(p);
        }
    }

    fn form_decode(body: &[u8]) -> HashMap<String, String> {
        let text = String::from_utf8_lossy(body);
        text.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let d = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (d(k), d(v))
            })
            .collect()
    }

    /// Recompute the SigV4 `authorization` of a received request from the stand-in's own copy
    /// of the secret; `Err` describes the mismatch.
    fn verify(
        fake: &Fake,
        service: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, String> {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let auth = h("authorization").ok_or("no authorization")?;
        let date = h("x-amz-date").ok_or("no x-amz-date")?;
        let id = auth
            .strip_prefix("AWS4-HMAC-SHA256 Credential=")
            .and_then(|r| r.split('/').next())
            .ok_or_else(|| format!("bad authorization {auth}"))?
            .to_owned();
        let expected_scope = format!(
            "Credential={id}/{}/{REGION}/{service}/aws4_request, ",
            &date[..8]
        );
        if !auth.contains(&expected_scope) {
            return Err(format!("credential scope: {auth}"));
        }
        let (secret, token) = fake
            .keys
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("unknown key {id}"))?;
        if h("x-amz-security-token") != token {
            return Err(format!(
                "security token for {id}: {:?}",
                h("x-amz-security-token")
            ));
        }
        let creds = AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: SecretString::from(secret),
            session_token: token.map(SecretString::from),
        };
        let rfc3339 = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &date[0..4],
            &date[4..6],
            &date[6..8],
            &date[9..11],
            &date[11..13],
            &date[13..15]
        );
        let time = humantime::parse_rfc3339(&rfc3339).map_err(|e| e.to_string())?;
        let host = h("host").ok_or("no host")?;
        let url = Url::parse(&format!("http://{host}{uri}")).map_err(|e| e.to_string())?;
        let extra: Vec<(String, String)> = h("content-type")
            .filter(|_| auth.contains("content-type;"))
            .map(|v| vec![("content-type".to_owned(), v)])
            .unwrap_or_default();
        let signed = sigv4::sign(
            &creds,
            sigv4::Scope {
                region: REGION,
                service,
            },
            method.as_str(),
            &url,
            &extra,
            body,
            time,
        );
        let recomputed = signed
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.expose_secret().to_owned())
            .unwrap_or_default();
        if recomputed != auth {
            return Err(format!(
                "signature mismatch:\n got {auth}\nwant {recomputed}"
            ));
        }
        Ok(id)
    }

    async fn handle(
        State(fake): State<Arc<Fake>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        if uri.path() == "/api/v1/query" {
            return match verify(&fake, "aps", &method, &uri, &headers, &body) {
                Ok(id) => {
                    let token = headers
                        .get("x-amz-security-token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    fake.queries.lock().unwrap().push((id, token));
                    (StatusCode::OK, SAMPLE.to_owned())
                }
                Err(e) => {
                    fake.problem(format!("query: {e}"));
                    (StatusCode::FORBIDDEN, String::new())
                }
            };
        }
        let form = form_decode(&body);
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let n = {
            let mut calls = fake.sts.lock().unwrap();
            calls.push(StsCall {
                form: form.clone(),
                authorization: authorization.clone(),
            });
            calls.len()
        };
        let action = form.get("Action").cloned().unwrap_or_default();
        if fake.fail.load(Ordering::SeqCst) {
            let token = form.get("WebIdentityToken").cloned().unwrap_or_default();
            return (
                StatusCode::FORBIDDEN,
                format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                     <Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized &amp; \
                     rejected {token} {BASE_SECRET}</Message></Error>\
                     <RequestId>r-1</RequestId></ErrorResponse>"
                ),
            );
        }
        let ok_form = form.get("Version").map(String::as_str) == Some("2011-06-15")
            && form.get("RoleSessionName").is_some_and(|s| !s.is_empty());
        if !ok_form || method != Method::POST || uri.path() != "/" {
            fake.problem(format!("sts request {method} {uri} {form:?}"));
            return (StatusCode::BAD_REQUEST, String::new());
        }
        let prefix = match action.as_str() {
            "AssumeRoleWithWebIdentity" => {
                if authorization.is_some() {
                    fake.problem("web identity call was signed".to_owned());
                }
                if form.get("RoleArn").map(String::as_str) != Some(ROLE_IRSA)
                    || form.get("WebIdentityToken").is_none_or(|t| t.is_empty())
                {
                    fake.problem(format!("web identity form {form:?}"));
                    return (StatusCode::BAD_REQUEST, String::new());
                }
                "ASIAIRSA"
            }
            "AssumeRole" => {
                if let Err(e) = verify(&fake, "sts", &method, &uri, &headers, &body) {
                    fake.problem(format!("AssumeRole: {e}"));
                    return (
                        StatusCode::FORBIDDEN,
                        "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error>\
                         </ErrorResponse>"
                            .to_owned(),
                    );
                }
                if form.get("RoleArn").map(String::as_str) != Some(ROLE_TARGET)
                    || !form["RoleSessionName"].starts_with("aws-go-sdk-")
                {
                    fake.problem(format!("assume role form {form:?}"));
                }
                "ASIAROLE"
            }
            other => {
                fake.problem(format!("unknown action {other}"));
                return (StatusCode::BAD_REQUEST, String::new());
            }
        };
        let id = format!("{prefix}{n}");
        let secret = format!("{prefix}-secret-{n}");
        let token = format!("{prefix}-session/+={n}");
        fake.keys
            .lock()
            .unwrap()
            .insert(id.clone(), (secret.clone(), Some(token.clone())));
        let expires = SystemTime::now() + Duration::from_secs(fake.lifetime.load(Ordering::SeqCst));
        let reply = format!(
            "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
             <{action}Result>\n<Credentials>\n\
               <AccessKeyId>{id}</AccessKeyId>\n\
               <SecretAccessKey>{secret}</SecretAccessKey>\n\
               <SessionToken>{token}</SessionToken>\n\
               <Expiration>{}</Expiration>\n\
             </Credentials>\n<AssumedRoleUser><Arn>x</Arn></AssumedRoleUser>\n</{action}Result>\n\
             <ResponseMetadata><RequestId>r-{n}</RequestId></ResponseMetadata>\n</{action}Response>",
            humantime::format_rfc3339_millis(expires)
        );
        (StatusCode::OK, reply)
    }

    async fn start() -> (String, Arc<Fake>) {
        let mut keys = HashMap::new();
        keys.insert(BASE_ID.to_owned(), (BASE_SECRET.to_owned(), None));
        let fake = Arc::new(Fake {
            sts: Mutex::default(),
            keys: Mutex::new(keys),
            lifetime: AtomicU64::new(3600),
            fail: AtomicBool::new(false),
            queries: Mutex::default(),
            problems: Mutex::default(),
        });
        let app = Router::new().fallback(any(handle)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), fake)
    }

    fn token_file(name: &str, content: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("tidescale-prom-aws-{name}-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    fn irsa_env(base: &str, file: &std::path::Path) -> BTreeMap<String, String> {
        [
            ("AWS_ENDPOINT_URL_STS", format!("{base}/")),
            ("AWS_ROLE_ARN", ROLE_IRSA.to_owned()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", file.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn cfg(base: &str, provider: &str, query: &str, auth: &[(&str, &str)]) -> ScalerConfig {
        let metadata: BTreeMap<String, String> = [
            ("serverAddress", base.to_owned()),
            ("query", query.to_owned()),
            ("threshold", "5".to_owned()),
            ("awsRegion", REGION.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        ScalerConfig {
            trigger_type: prometheus::TYPE.into(),
            metadata,
            auth_params: auth
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            pod_identity: (!provider.is_empty()).then(|| PodIdentity {
                provider: provider.into(),
                ..PodIdentity::default()
            }),
            timeout: Duration::from_secs(2),
            ..ScalerConfig::default()
        }
    }

    fn options(env: BTreeMap<String, String>) -> Options {
        Options {
            env: Some(env),
            ..Options::default()
        }
    }

    /// Build `triggers` scalers and poll each `polls` times; every poll must return 7.
    async fn poll_all(configs: &[ScalerConfig], env: &BTreeMap<String, String>, polls: usize) {
        let mut scalers = Vec::new();
        for c in configs {
            scalers.push(
                prometheus::build_with(c, options(env.clone()))
                    .await
                    .unwrap(),
            );
        }
        for _ in 0..polls {
            for s in &scalers {
                let got = s.metrics_and_activity("s0-prometheus").await.unwrap();
                assert_eq!(got.values, vec![7.0]);
            }
        }
    }

    fn no_problems(fake: &Fake) {
        let problems = fake.problems.lock().unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[tokio::test]
    async fn irsa_sends_the_token_file_once_for_many_triggers_and_polls() {
        let (base, fake) = start().await;
        let file = token_file("irsa-many", "eyJ.irsa-token.sig\n");
        let env = irsa_env(&base, &file);
        let configs: Vec<_> = (0..3)
            .map(|i| cfg(&base, "aws", &format!("sum(up{{job=\"{i}\"}})"), &[]))
            .collect();
        poll_all(&configs, &env, 4).await;
        no_problems(&fake);
        let calls = fake.sts_calls("AssumeRoleWithWebIdentity");
        assert_eq!(calls.len(), 1, "3 triggers x 4 polls -> one STS call");
        assert_eq!(fake.sts.lock().unwrap().len(), 1);
        let call = &calls[0];
        assert_eq!(call.form["WebIdentityToken"], "eyJ.irsa-token.sig");
        assert_eq!(call.form["RoleArn"], ROLE_IRSA);
        assert!(
            call.form["RoleSessionName"]
                .bytes()
                .all(|b| b.is_ascii_digit())
        );
        assert!(call.authorization.is_none());
        let queries = fake.queries.lock().unwrap();
        assert_eq!(queries.len(), 12);
        assert!(
            queries
                .iter()
                .all(|(id, token)| id == "ASIAIRSA1" && token == "ASIAIRSA-session/+=1"),
            "{queries:?}"
        );
    }

    #[tokio::test]
    async fn aws_eks_and_identity_owner_operator_use_irsa_too() {
        let (base, fake) = start().await;
        let file = token_file("irsa-eks", "eks-token");
        let mut env = irsa_env(&base, &file);
        env.insert("AWS_ROLE_SESSION_NAME".into(), "keda-session".into());
        let mut owner = cfg(&base, "", "up", &[]);
        owner
            .metadata
            .insert("identityOwner".into(), "operator".into());
        poll_all(&[cfg(&base, "aws-eks", "up", &[]), owner], &env, 2).await;
        no_problems(&fake);
        let calls = fake.sts_calls("AssumeRoleWithWebIdentity");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].form["RoleSessionName"], "keda-session");
    }

    #[tokio::test]
    async fn assume_role_with_static_keys_is_sigv4_signed_and_cached() {
        let (base, fake) = start().await;
        let env: BTreeMap<String, String> =
            [("AWS_ENDPOINT_URL_STS".to_owned(), format!("{base}/"))].into();
        let auth = [
            ("awsRoleArn", ROLE_TARGET),
            ("awsAccessKeyID", BASE_ID),
            ("awsSecretAccessKey", BASE_SECRET),
        ];
        let configs: Vec<_> = (0..2)
            .map(|i| cfg(&base, "", &format!("q{i}"), &auth))
            .collect();
        poll_all(&configs, &env, 3).await;
        // The stand-in recomputed the signature with its own copy of the secret.
        no_problems(&fake);
        let calls = fake.sts_calls("AssumeRole");
        assert_eq!(calls.len(), 1, "2 triggers x 3 polls -> one AssumeRole");
        let auth = calls[0].authorization.clone().unwrap();
        assert!(
            auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={BASE_ID}/"))
                && auth.contains(&format!("/{REGION}/sts/aws4_request, "))
                && auth.contains("SignedHeaders=content-type;host;x-amz-date, Signature="),
            "{auth}"
        );
        assert_eq!(calls[0].form["RoleArn"], ROLE_TARGET);
        let queries = fake.queries.lock().unwrap();
        assert_eq!(queries.len(), 6);
        assert!(
            queries
                .iter()
                .all(|(id, token)| id == "ASIAROLE1" && token == "ASIAROLE-session/+=1"),
            "{queries:?}"
        );
    }

    #[tokio::test]
    async fn assume_role_on_the_operator_irsa_identity() {
        let (base, fake) = start().await;
        let file = token_file("irsa-chain", "chain-token");
        let env = irsa_env(&base, &file);
        let configs: Vec<_> = (0..2)
            .map(|i| cfg(&base, "", &format!("q{i}"), &[("awsRoleArn", ROLE_TARGET)]))
            .collect();
        poll_all(&configs, &env, 3).await;
        no_problems(&fake);
        assert_eq!(fake.sts_calls("AssumeRoleWithWebIdentity").len(), 1);
        let assume = fake.sts_calls("AssumeRole");
        assert_eq!(assume.len(), 1);
        // Signed with the web-identity session credentials.
        assert!(
            assume[0]
                .authorization
                .as_deref()
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256 Credential=ASIAIRSA1/"),
            "{assume:?}"
        );
        let queries = fake.queries.lock().unwrap();
        assert!(
            queries.iter().all(|(id, _)| id == "ASIAROLE2"),
            "{queries:?}"
        );
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_refreshed_and_the_token_file_reread() {
        let (base, fake) = start().await;
        let file = token_file("irsa-refresh", "token-one");
        let env = irsa_env(&base, &file);
        // Four minutes: already inside the five-minute refresh margin.
        fake.lifetime.store(240, Ordering::SeqCst);
        let scaler = prometheus::build_with(&cfg(&base, "aws", "up", &[]), options(env))
            .await
            .unwrap();
        scaler.metrics_and_activity("s0-prometheus").await.unwrap();
        std::fs::write(&file, "token-two\n").unwrap();
        // Just outside the margin: cached.
        fake.lifetime.store(400, Ordering::SeqCst);
        scaler.metrics_and_activity("s0-prometheus").await.unwrap();
        scaler.metrics_and_activity("s0-prometheus").await.unwrap();
        no_problems(&fake);
        let calls = fake.sts_calls("AssumeRoleWithWebIdentity");
        let tokens: Vec<&str> = calls
            .iter()
            .map(|c| c.form["WebIdentityToken"].as_str())
            .collect();
        assert_eq!(tokens, ["token-one", "token-two"]);
        let queries = fake.queries.lock().unwrap();
        let ids: Vec<&str> = queries.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["ASIAIRSA1", "ASIAIRSA2", "ASIAIRSA2"]);
    }

    #[tokio::test]
    async fn failed_early_refresh_keeps_unexpired_credentials() {
        let (base, fake) = start().await;
        let file = token_file("irsa-stale", "t");
        let env = irsa_env(&base, &file);
        fake.lifetime.store(240, Ordering::SeqCst);
        let scaler = prometheus::build_with(&cfg(&base, "aws", "up", &[]), options(env))
            .await
            .unwrap();
        scaler.metrics_and_activity("s0-prometheus").await.unwrap();
        fake.fail.store(true, Ordering::SeqCst);
        let got = scaler.metrics_and_activity("s0-prometheus").await.unwrap();
        assert_eq!(got.values, vec![7.0]);
        no_problems(&fake);
        assert_eq!(fake.sts.lock().unwrap().len(), 2, "refresh was attempted");
        let queries = fake.queries.lock().unwrap();
        assert!(
            queries.iter().all(|(id, _)| id == "ASIAIRSA1"),
            "{queries:?}"
        );
    }

    #[tokio::test]
    async fn sts_errors_name_the_step_and_hide_secrets() {
        let (base, fake) = start().await;
        fake.fail.store(true, Ordering::SeqCst);
        let file = token_file("irsa-error", "very-secret-web-token");
        let env = irsa_env(&base, &file);
        let scaler = prometheus::build_with(&cfg(&base, "aws", "up", &[]), options(env))
            .await
            .unwrap();
        let err = scaler
            .metrics_and_activity("s0-prometheus")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "sts AssumeRoleWithWebIdentity for role {ROLE_IRSA}: HTTP 403: AccessDenied: \
                 Not authorized & rejected"
            )),
            "{err}"
        );
        assert!(!err.contains("very-secret-web-token"), "{err}");

        let env: BTreeMap<String, String> =
            [("AWS_ENDPOINT_URL_STS".to_owned(), format!("{base}/"))].into();
        let auth = [
            ("awsRoleArn", ROLE_TARGET),
            ("awsAccessKeyID", BASE_ID),
            ("awsSecretAccessKey", BASE_SECRET),
        ];
        let scaler = prometheus::build_with(&cfg(&base, "", "up", &auth), options(env))
            .await
            .unwrap();
        let err = scaler
            .metrics_and_activity("s0-prometheus")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "sts AssumeRole for role {ROLE_TARGET}: HTTP 403: AccessDenied"
            )),
            "{err}"
        );
        assert!(!err.contains(BASE_SECRET), "{err}");
        assert!(fake.queries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn missing_token_file_and_role_are_named() {
        let (base, _fake) = start().await;
        let missing = std::env::temp_dir().join("tidescale-prom-aws-no-such-file");
        let env = irsa_env(&base, &missing);
        let scaler = prometheus::build_with(&cfg(&base, "aws", "up", &[]), options(env.clone()))
            .await
            .unwrap();
        let err = scaler
            .metrics_and_activity("s0-prometheus")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{err}"
        );
        let mut env = env;
        env.remove("AWS_ROLE_ARN");
        let err = prometheus::build_with(&cfg(&base, "aws", "up", &[]), options(env))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWS_ROLE_ARN is not"), "{err}");
    }

    #[tokio::test]
    async fn silent_sts_fails_the_poll_within_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let file = token_file("irsa-silent", "t");
        let env = irsa_env(silent.trim_end_matches('/'), &file);
        let mut c = cfg("http://127.0.0.1:9", "aws", "up", &[]);
        c.metadata.insert("timeout".into(), "300ms".into());
        let scaler = prometheus::build_with(&c, options(env)).await.unwrap();
        let started = Instant::now();
        let err = scaler
            .metrics_and_activity("s0-prometheus")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(err.contains("sts AssumeRoleWithWebIdentity"), "{err}");
    }
}
