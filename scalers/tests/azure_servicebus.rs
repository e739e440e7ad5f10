//! The `azure-servicebus` scaler against a local HTTPS stand-in for the management API and
//! Azure AD (see `azure_servicebus_support`). Certificates are verified: the test trusts the
//! server's self-signed certificate through `Options::ca_pem`.

#![cfg(feature = "azure-servicebus")]

mod azure_servicebus_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use azure_servicebus_support::{ASSERTION, CLIENT_ID, KEY, KEY_NAME, Mode, Server, start};
use rstest::rstest;
use tidescale_scalers::azure_servicebus::{self, Options};
use tidescale_scalers::{PodIdentity, ScalerConfig, ScalerError};

/// Grouped in a module so the tests are selected by `-E 'test(azure)'`.
mod azure_servicebus_api {
    use super::*;

    fn connection(server: &Server, key: &str) -> String {
        format!(
            "Endpoint=sb://{}/;SharedAccessKeyName={KEY_NAME};SharedAccessKey={key}",
            server.host
        )
    }

    fn cfg(server: &Server, meta: &[(&str, &str)]) -> ScalerConfig {
        ScalerConfig {
            trigger_type: azure_servicebus::TYPE.into(),
            metadata: meta
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            auth_params: [("connection".to_owned(), connection(server, KEY))].into(),
            timeout: Duration::from_secs(3),
            ..ScalerConfig::default()
        }
    }

    fn trusting(server: &Server) -> Options {
        Options {
            ca_pem: Some(server.ca_pem.clone()),
            ..Options::default()
        }
    }

    async fn poll_cfg(server: &Server, c: &ScalerConfig) -> Result<(f64, bool), ScalerError> {
        let s = azure_servicebus::build_with(c, trusting(server)).await?;
        let name = s.metric_specs()[0].metric_name.clone();
        let out = s
            .metrics_and_activity(&name)
            .await
            .map(|m| (m.values[0], m.active));
        s.close().await?;
        out
    }

    async fn poll(server: &Server, meta: &[(&str, &str)]) -> Result<(f64, bool), ScalerError> {
        poll_cfg(server, &cfg(server, meta)).await
    }

    fn assert_clean(server: &Server) {
        let st = server.state();
        assert!(
            st.rejections.is_empty(),
            "server rejected credentials: {:?}",
            st.rejections
        );
    }

    #[tokio::test]
    async fn queue_active_count_with_a_verified_sas_token() {
        let server = start().await;
        server.state().queues.insert("orders".into(), 7);
        assert_eq!(
            poll(&server, &[("queueName", "orders")]).await.unwrap(),
            (7.0, true)
        );
        assert_clean(&server);
        assert_eq!(
            server.state().requests,
            vec!["/orders?api-version=2021-05".to_owned()]
        );
    }

    #[tokio::test]
    async fn mixed_case_and_hierarchical_names_sign_the_escaped_lowercase_resource() {
        let server = start().await;
        server.state().queues.insert("Team/Orders_1".into(), 2);
        assert_eq!(
            poll(&server, &[("queueName", "Team/Orders_1")])
                .await
                .unwrap(),
            (2.0, true)
        );
        assert_clean(&server);
    }

    #[tokio::test]
    async fn subscription_active_count() {
        let server = start().await;
        server
            .state()
            .subscriptions
            .insert(("events".into(), "workers".into()), 4);
        let meta = [("topicName", "events"), ("subscriptionName", "workers")];
        assert_eq!(poll(&server, &meta).await.unwrap(), (4.0, true));
        assert_eq!(
            server.state().requests,
            vec!["/events/Subscriptions/workers?api-version=2021-05".to_owned()]
        );
        assert_clean(&server);
    }

    #[rstest]
    #[case::queue(&[("queueName", "nope")], "queue nope doesn't exist")]
    #[case::subscription(&[("topicName", "t"), ("subscriptionName", "s")], "subscription s doesn't exist in topic t")]
    #[tokio::test]
    async fn missing_entity_empty_feed_is_an_error(
        #[case] meta: &[(&str, &str)],
        #[case] message: &str,
    ) {
        let server = start().await;
        let err = poll(&server, meta).await.expect_err("missing entity");
        assert!(
            !err.is_config() && err.to_string().contains(message),
            "{err}"
        );
    }

    #[rstest]
    #[case::sum("sum", 12.0)]
    #[case::max("max", 9.0)]
    #[case::avg("avg", 4.0)]
    #[tokio::test]
    async fn queue_regex_aggregates_whole_name_matches(
        #[case] operation: &str,
        #[case] value: f64,
    ) {
        let server = start().await;
        {
            let mut st = server.state();
            st.queues.extend([
                ("orders-1".into(), 3),
                ("orders-2".into(), 9),
                ("orders-3".into(), 0),
                ("xorders-4".into(), 100),
            ]);
            // 150 more queues force a second page ($skip=100).
            st.queues
                .extend((0..150).map(|i| (format!("bulk-{i:03}"), 1)));
        }
        let meta = [
            ("queueName", "orders-[0-9]"),
            ("useRegex", "true"),
            ("operation", operation),
        ];
        assert_eq!(poll(&server, &meta).await.unwrap(), (value, true));
        let requests = server.state().requests.clone();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(requests[1].contains("$skip=100"), "{requests:?}");
        assert_clean(&server);
    }

    #[tokio::test]
    async fn subscription_regex_sums_matching_subscriptions_of_the_topic() {
        let server = start().await;
        server.state().subscriptions.extend([
            (("t".into(), "worker-a".into()), 5),
            (("t".into(), "worker-b".into()), 6),
            (("t".into(), "audit".into()), 50),
            (("other".into(), "worker-c".into()), 70),
        ]);
        let meta = [
            ("topicName", "t"),
            ("subscriptionName", "worker-.*"),
            ("useRegex", "true"),
        ];
        assert_eq!(poll(&server, &meta).await.unwrap(), (11.0, true));
        assert_clean(&server);
    }

    #[tokio::test]
    async fn regex_without_matches_is_zero_and_inactive() {
        let server = start().await;
        server.state().queues.insert("a".into(), 5);
        assert_eq!(
            poll(&server, &[("queueName", "b.*"), ("useRegex", "true")])
                .await
                .unwrap(),
            (0.0, false)
        );
    }

    #[rstest]
    #[case::at_threshold("7", false)]
    #[case::below_value("6", true)]
    #[tokio::test]
    async fn activation_is_strictly_greater(#[case] activation: &str, #[case] active: bool) {
        let server = start().await;
        server.state().queues.insert("q".into(), 7);
        let got = poll(
            &server,
            &[("queueName", "q"), ("activationMessageCount", activation)],
        )
        .await
        .unwrap();
        assert_eq!(got, (7.0, active));
    }

    #[rstest]
    #[case::unauthorized(Mode::Unauthorized, "HTTP 401: Manage,EntityRead claims required")]
    #[case::throttled(Mode::Throttled, "throttled by Service Bus (HTTP 429)")]
    #[case::no_count_details(
        Mode::NoCountDetails,
        "invalid queue runtime properties: no CountDetails element"
    )]
    #[tokio::test]
    async fn service_errors_are_backend_errors(#[case] mode: Mode, #[case] message: &str) {
        let server = start().await;
        server.state().queues.insert("q".into(), 1);
        server.state().mode = mode;
        let err = poll(&server, &[("queueName", "q")])
            .await
            .expect_err("service error");
        assert_eq!(err.kind(), "backend");
        assert!(err.to_string().contains(message), "{err}");
    }

    #[tokio::test]
    async fn wrong_key_is_rejected_by_the_signature_check() {
        let server = start().await;
        server.state().queues.insert("q".into(), 1);
        let mut c = cfg(&server, &[("queueName", "q")]);
        c.auth_params
            .insert("connection".into(), connection(&server, "not-the-key"));
        let err = poll_cfg(&server, &c).await.expect_err("bad signature");
        assert!(
            err.to_string().contains("HTTP 401") && err.to_string().contains("signature mismatch"),
            "{err}"
        );
        assert!(!err.to_string().contains("not-the-key"));
    }

    #[tokio::test]
    async fn untrusted_certificate_is_refused() {
        let server = start().await;
        server.state().queues.insert("q".into(), 1);
        let s = azure_servicebus::build(&cfg(&server, &[("queueName", "q")]))
            .await
            .unwrap();
        let err = s
            .metrics_and_activity("s0-azure-servicebus-q")
            .await
            .expect_err("self-signed cert not trusted");
        assert_eq!(err.kind(), "backend");
        assert!(server.state().requests.is_empty());
    }

    #[tokio::test]
    async fn slow_service_times_out() {
        let server = start().await;
        server.state().queues.insert("q".into(), 1);
        server.state().mode = Mode::Slow;
        let mut c = cfg(&server, &[("queueName", "q")]);
        c.timeout = Duration::from_millis(300);
        let start = Instant::now();
        let err = poll_cfg(&server, &c).await.expect_err("timeout");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            start.elapsed()
        );
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    fn workload(server: &Server, token_file: &std::path::Path) -> (ScalerConfig, Options) {
        let mut c = cfg(server, &[("queueName", "q"), ("namespace", "tidescale-ns")]);
        c.auth_params.clear();
        c.pod_identity = Some(PodIdentity {
            provider: "azure-workload".into(),
            identity_id: Some(CLIENT_ID.into()),
            identity_authority_host: Some(format!("https://{}/", server.host)),
            ..PodIdentity::default()
        });
        let env: BTreeMap<String, String> = [
            ("AZURE_TENANT_ID".to_owned(), "tenant-1".to_owned()),
            (
                "AZURE_FEDERATED_TOKEN_FILE".to_owned(),
                token_file.display().to_string(),
            ),
        ]
        .into();
        let options = Options {
            ca_pem: Some(server.ca_pem.clone()),
            env: Some(env),
            fqdn: Some(server.host.clone()),
        };
        (c, options)
    }

    fn token_file(name: &str, content: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("tidescale-azure-{name}-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[tokio::test]
    async fn workload_identity_gets_and_caches_an_aad_token() {
        let server = start().await;
        server.state().queues.insert("q".into(), 3);
        let file = token_file("ok", &format!("{ASSERTION}\n"));
        let (c, options) = workload(&server, &file);
        let s = azure_servicebus::build_with(&c, options).await.unwrap();
        for _ in 0..3 {
            let m = s
                .metrics_and_activity("s0-azure-servicebus-q")
                .await
                .unwrap();
            assert_eq!((m.values[0], m.active), (3.0, true));
        }
        assert_clean(&server);
        assert_eq!(
            server.state().tokens_issued,
            1,
            "the token is cached between polls"
        );
        s.close().await.unwrap();
        std::fs::remove_file(file).unwrap();
    }

    #[tokio::test]
    async fn unauthorized_reply_drops_the_cached_aad_token() {
        let server = start().await;
        server.state().queues.insert("q".into(), 3);
        let file = token_file("401", ASSERTION);
        let (c, options) = workload(&server, &file);
        let s = azure_servicebus::build_with(&c, options).await.unwrap();
        server.state().mode = Mode::Unauthorized;
        let err = s
            .metrics_and_activity("s0-azure-servicebus-q")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 401"), "{err}");
        server.state().mode = Mode::Normal;
        let m = s
            .metrics_and_activity("s0-azure-servicebus-q")
            .await
            .unwrap();
        assert_eq!(m.values, vec![3.0]);
        assert_eq!(
            server.state().tokens_issued,
            2,
            "a 401 forces a fresh token"
        );
        std::fs::remove_file(file).unwrap();
    }

    #[tokio::test]
    async fn rejected_federated_assertion_reports_the_aad_error_code() {
        let server = start().await;
        server.state().queues.insert("q".into(), 3);
        let file = token_file("bad", "some-other-token");
        let (c, options) = workload(&server, &file);
        let s = azure_servicebus::build_with(&c, options).await.unwrap();
        let err = s
            .metrics_and_activity("s0-azure-servicebus-q")
            .await
            .expect_err("assertion rejected");
        let text = err.to_string();
        assert!(
            text.contains("HTTP 401") && text.contains("invalid_client"),
            "{text}"
        );
        assert!(
            !text.contains("some-other-token") && !text.contains("AADSTS"),
            "{text}"
        );
        assert!(
            server.state().requests.is_empty(),
            "no Service Bus call without a token"
        );
        std::fs::remove_file(file).unwrap();
    }

    #[tokio::test]
    async fn workload_identity_without_token_file_fails_at_build() {
        let server = start().await;
        let (c, mut options) = workload(&server, std::path::Path::new("/unused"));
        options.env = Some(BTreeMap::new());
        let err = azure_servicebus::build_with(&c, options)
            .await
            .expect_err("no env");
        assert!(
            err.is_config() && err.to_string().contains("no tenant id"),
            "{err}"
        );
    }
}
