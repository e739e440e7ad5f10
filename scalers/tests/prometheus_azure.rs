//! Azure Monitor managed Prometheus (spec/scalers.md §5.2): with `podIdentity.provider:
//! azure-workload` and no `authModes`, the scaler exchanges the federated token for an Azure AD
//! token of the managed-Prometheus scope and sends it as a bearer. The local HTTPS stand-in of
//! `azure_servicebus_support` plays both the AAD token endpoint (checking client id, tenant,
//! assertion and scope) and the query endpoint (checking the bearer); its certificate is
//! verified through `Options::token_ca_pem` and the trigger's `unsafeSsl` is never needed for
//! the token endpoint.

#![cfg(all(feature = "prometheus", feature = "azure-servicebus"))]

#[allow(dead_code)]
mod azure_servicebus_support;

use std::collections::BTreeMap;
use std::time::Duration;

use azure_servicebus_support::{ASSERTION, CLIENT_ID, Server, start};
use tidescale_scalers::azure_ad::TokenSource;
use tidescale_scalers::prometheus::{self, Options};
use tidescale_scalers::{PodIdentity, ScalerConfig};

const PUBLIC_SCOPE: &str = "https://prometheus.monitor.azure.com/.default";

/// Grouped so the tests are selected by `-E 'test(azure)'`.
mod azure_managed_prometheus {
    use super::*;

    fn token_file(name: &str, content: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "tidescale-prom-azure-{name}-{}",
            std::process::id()
        ));
        std::fs::write(&path, content).unwrap();
        path
    }

    fn setup(server: &Server, meta: &[(&str, &str)], file: &str) -> (ScalerConfig, Options) {
        let mut metadata: BTreeMap<String, String> = [
            ("serverAddress", format!("https://{}", server.host)),
            ("query", "sum(up)".to_owned()),
            ("threshold", "5".to_owned()),
            // The query endpoint's self-signed certificate (the token endpoint's is trusted
            // through `token_ca_pem` instead).
            ("unsafeSsl", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        metadata.extend(meta.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let cfg = ScalerConfig {
            trigger_type: prometheus::TYPE.into(),
            metadata,
            pod_identity: Some(PodIdentity {
                provider: "azure-workload".into(),
                identity_id: Some(CLIENT_ID.into()),
                identity_authority_host: Some(format!("https://{}/", server.host)),
                ..PodIdentity::default()
            }),
            timeout: Duration::from_secs(2),
            ..ScalerConfig::default()
        };
        let env = [
            ("AZURE_TENANT_ID".to_owned(), "tenant-1".to_owned()),
            (
                "AZURE_FEDERATED_TOKEN_FILE".to_owned(),
                token_file(file, &format!("{ASSERTION}\n"))
                    .display()
                    .to_string(),
            ),
        ]
        .into();
        let options = Options {
            token_ca_pem: Some(server.ca_pem.clone()),
            env: Some(env),
        };
        (cfg, options)
    }

    #[tokio::test]
    async fn azure_workload_identity_sends_one_cached_token_for_many_triggers() {
        let server = start().await;
        server.state().scope = Some(PUBLIC_SCOPE.into());
        let (cfg, options) = setup(&server, &[], "shared");
        let mut scalers = Vec::new();
        for _ in 0..5 {
            scalers.push(prometheus::build_with(&cfg, options.clone()).await.unwrap());
        }
        for _ in 0..3 {
            for scaler in &scalers {
                let got = scaler.metrics_and_activity("s0-prometheus").await.unwrap();
                assert_eq!(got.values, vec![7.0]);
                assert!(got.active);
            }
        }
        let st = server.state();
        assert!(st.rejections.is_empty(), "{:?}", st.rejections);
        assert_eq!(st.prometheus_queries, 15);
        assert_eq!(
            st.tokens_issued, 1,
            "5 triggers × 3 polls share one AAD token"
        );
        drop(st);
        assert!(TokenSource::live_sources() >= 1);
    }

    #[tokio::test]
    async fn private_cloud_uses_the_resource_url_as_the_scope() {
        let server = start().await;
        let scope = "https://prometheus.private.example/.default";
        server.state().scope = Some(scope.into());
        let meta = [
            ("cloud", "Private"),
            ("azureManagedPrometheusResourceURL", scope),
        ];
        let (cfg, options) = setup(&server, &meta, "private");
        let scaler = prometheus::build_with(&cfg, options).await.unwrap();
        let got = scaler.metrics_and_activity("s0-prometheus").await.unwrap();
        assert_eq!(got.values, vec![7.0]);
        assert_eq!(server.state().tokens_issued, 1);
    }

    #[tokio::test]
    async fn wrong_scope_is_reported_by_error_code_without_secrets() {
        let server = start().await;
        // The token endpoint expects the US Government scope; the trigger asks for public.
        server.state().scope = Some("https://prometheus.monitor.azure.us/.default".into());
        let (cfg, options) = setup(&server, &[], "wrong-scope");
        let scaler = prometheus::build_with(&cfg, options).await.unwrap();
        let err = scaler
            .metrics_and_activity("s0-prometheus")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 401: invalid_client"), "{err}");
        assert!(!err.contains(ASSERTION) && !err.contains("AADSTS"), "{err}");
        assert_eq!(
            server.state().prometheus_queries,
            0,
            "no query without a token"
        );
    }

    #[tokio::test]
    async fn missing_federated_token_file_setting_fails_at_build() {
        let server = start().await;
        let (cfg, mut options) = setup(&server, &[], "unset");
        options.env = Some(BTreeMap::from([(
            "AZURE_TENANT_ID".to_owned(),
            "tenant-1".to_owned(),
        )]));
        let err = prometheus::build_with(&cfg, options).await.unwrap_err();
        assert!(err.is_config(), "{err}");
        assert!(
            err.to_string().contains("AZURE_FEDERATED_TOKEN_FILE"),
            "{err}"
        );
    }
}
