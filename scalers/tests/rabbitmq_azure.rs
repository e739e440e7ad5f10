//! RabbitMQ `workloadIdentityResource` (spec/scalers.md §2.4): with `podIdentity.provider:
//! azure-workload`, the management API is called with `Authorization: Bearer <AAD token>` for
//! the audience's `/.default` scope instead of Basic userinfo. The AAD token endpoint is the
//! local HTTPS stand-in of `azure_servicebus_support` (certificate verified through
//! `Options::token_ca_pem`); the management API is a local server that accepts only the issued
//! bearer. The real broker in the test script has no OAuth2 plugin, so this path is not run
//! against it; AMQP with a workload identity is refused at parse time, as the spec requires.

#![cfg(all(feature = "rabbitmq", feature = "azure-servicebus"))]

#[allow(dead_code)]
mod azure_servicebus_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use azure_servicebus_support::{ACCESS_TOKEN, ASSERTION, CLIENT_ID, Server, start};
use tidescale_scalers::rabbitmq::{self, Options};
use tidescale_scalers::{PodIdentity, ScalerConfig};

const RESOURCE: &str = "api://rabbitmq-management";

/// What the management API stand-in saw: the authorization header of every request.
type Seen = Arc<Mutex<Vec<String>>>;

/// `GET /api/queues/%2F/orders` answering 12 messages to the issued bearer only.
async fn management_api() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let handler = |State(seen): State<Seen>, headers: HeaderMap| async move {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        seen.lock().unwrap().push(auth.clone());
        if auth != format!("Bearer {ACCESS_TOKEN}") {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        (
            StatusCode::OK,
            r#"{"name":"orders","messages":12,"messages_ready":10}"#.to_owned(),
        )
    };
    let app = Router::new()
        .route("/api/queues/%2F/orders", get(handler))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), seen)
}

fn setup(server: &Server, api: &str, host_userinfo: &str) -> (ScalerConfig, Options) {
    let path = std::env::temp_dir().join(format!("tidescale-rabbit-azure-{}", std::process::id()));
    std::fs::write(&path, ASSERTION).unwrap();
    let cfg = ScalerConfig {
        trigger_type: rabbitmq::TYPE.into(),
        metadata: BTreeMap::from([
            ("queueName".to_owned(), "orders".to_owned()),
            ("protocol".to_owned(), "http".to_owned()),
        ]),
        auth_params: BTreeMap::from([
            ("host".to_owned(), format!("http://{host_userinfo}{api}")),
            ("workloadIdentityResource".to_owned(), RESOURCE.to_owned()),
        ]),
        pod_identity: Some(PodIdentity {
            provider: "azure-workload".into(),
            identity_id: Some(CLIENT_ID.into()),
            identity_tenant_id: Some("tenant-1".into()),
            identity_authority_host: Some(format!("https://{}/", server.host)),
        }),
        timeout: Duration::from_secs(2),
        ..ScalerConfig::default()
    };
    let options = Options {
        token_ca_pem: Some(server.ca_pem.clone()),
        env: Some(BTreeMap::from([(
            "AZURE_FEDERATED_TOKEN_FILE".to_owned(),
            path.display().to_string(),
        )])),
    };
    (cfg, options)
}

/// Grouped so the tests are selected by `-E 'test(azure)'`.
mod rabbitmq_azure_workload_identity {
    use super::*;

    #[tokio::test]
    async fn management_api_gets_the_aad_bearer_instead_of_basic_userinfo() {
        let server = start().await;
        server.state().scope = Some(format!("{RESOURCE}/.default"));
        let (api, seen) = management_api().await;
        let (cfg, options) = setup(&server, &api, "guest:secret-pass@");
        let a = rabbitmq::build_with(&cfg, options.clone()).await.unwrap();
        let b = rabbitmq::build_with(&cfg, options).await.unwrap();
        for scaler in [&a, &b, &a] {
            let got = scaler
                .metrics_and_activity("s0-rabbitmq-orders")
                .await
                .unwrap();
            assert_eq!(got.values, vec![12.0]);
        }
        let st = server.state();
        assert!(st.rejections.is_empty(), "{:?}", st.rejections);
        assert_eq!(st.tokens_issued, 1, "two triggers, three polls, one token");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|a| a.starts_with("Bearer ")), "{seen:?}");
    }

    #[tokio::test]
    async fn a_token_for_the_wrong_audience_fails_without_calling_the_api() {
        let server = start().await;
        server.state().scope = Some("api://someone-else/.default".into());
        let (api, seen) = management_api().await;
        let (cfg, options) = setup(&server, &api, "");
        let scaler = rabbitmq::build_with(&cfg, options).await.unwrap();
        let err = scaler
            .metrics_and_activity("s0-rabbitmq-orders")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 401: invalid_client"), "{err}");
        assert!(!err.contains(ASSERTION), "{err}");
        assert!(seen.lock().unwrap().is_empty());
    }
}
