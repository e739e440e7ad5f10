use std::time::Duration;

use prometheus::CounterVec;

use super::*;

fn labels<'a>(namespace: &'a str, name: &'a str, index: usize) -> PollLabels<'a> {
    PollLabels {
        namespace,
        scaled_object: name,
        scaler: "rabbitmq",
        trigger_index: index,
        metric: "s0-rabbitmq-orders",
        resource_type: ResourceType::ScaledObject,
    }
}

/// The `# TYPE` line of every family in the exposition text, as (name, type).
fn types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

fn populated() -> Metrics {
    let metrics = Metrics::new();
    let poll = labels("shop", "orders", 0);
    metrics.record_poll(&poll, 42.0, true, Duration::from_millis(250));
    metrics.record_scaler_error(&poll);
    metrics.set_paused("shop", "orders", false);
    metrics.record_scale_loop_latency("shop", "orders", Duration::from_millis(5));
    metrics.record_poll_lateness(Duration::from_millis(5));
    metrics.trigger_registered("rabbitmq");
    metrics.resource_registered(RegisteredResource::ScaledObject, "shop");
    metrics.record_api_write("Scale", "patch");
    metrics.set_backend_connections("rabbitmq", 1);
    drop(metrics.reconcile_timer());
    metrics.record_reconcile_error("PatchHpa");
    metrics
}

#[test]
fn telemetry_families_have_keda_names_and_types() {
    let text = populated().render();
    let mut found = types(&text);
    found.sort();
    let mut expected: Vec<(String, String)> = [
        ("keda_build_info", "gauge"),
        ("keda_internal_scale_loop_latency_seconds", "gauge"),
        ("keda_resource_registered_total", "gauge"),
        ("keda_scaled_object_errors_total", "counter"),
        ("keda_scaled_object_paused", "gauge"),
        ("keda_scaler_active", "gauge"),
        ("keda_scaler_detail_errors_total", "counter"),
        ("keda_scaler_metrics_latency_seconds", "gauge"),
        ("keda_scaler_metrics_value", "gauge"),
        ("keda_trigger_registered_total", "gauge"),
        ("tidescale_api_writes_total", "counter"),
        ("tidescale_backend_connections", "gauge"),
        ("tidescale_leader", "gauge"),
        ("tidescale_reconcile_duration_seconds", "histogram"),
        ("tidescale_reconcile_errors_total", "counter"),
        ("tidescale_scaling_poll_lateness_seconds", "histogram"),
    ]
    .iter()
    .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
    .collect();
    expected.sort();
    assert_eq!(found, expected, "{text}");
}

#[test]
fn telemetry_scaler_series_carry_keda_label_set() {
    let text = populated().render();
    let keda_labels = r#"{metric="s0-rabbitmq-orders",namespace="shop",scaledObject="orders",scaler="rabbitmq",triggerIndex="0",type="scaledobject"}"#;
    for line in [
        format!("keda_scaler_metrics_value{keda_labels} 42"),
        format!("keda_scaler_metrics_latency_seconds{keda_labels} 0.25"),
        format!("keda_scaler_active{keda_labels} 1"),
        format!("keda_scaler_detail_errors_total{keda_labels} 1"),
        r#"keda_scaled_object_errors_total{namespace="shop",scaledObject="orders"} 1"#.to_owned(),
        r#"keda_scaled_object_paused{namespace="shop",scaledObject="orders"} 0"#.to_owned(),
        r#"keda_internal_scale_loop_latency_seconds{namespace="shop",resource="orders",type="scaledobject"} 0.005"#.to_owned(),
        r#"keda_trigger_registered_total{type="rabbitmq"} 1"#.to_owned(),
        r#"keda_resource_registered_total{namespace="shop",type="scaled_object"} 1"#.to_owned(),
        r#"tidescale_api_writes_total{kind="Scale",verb="patch"} 1"#.to_owned(),
        r#"tidescale_backend_connections{scaler="rabbitmq"} 1"#.to_owned(),
        r#"tidescale_reconcile_errors_total{kind="PatchHpa"} 1"#.to_owned(),
        "tidescale_scaling_poll_lateness_seconds_count 1".to_owned(),
        "tidescale_reconcile_duration_seconds_count 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[test]
fn telemetry_help_texts_match_keda() {
    let text = populated().render();
    assert!(text.contains(
        "# HELP keda_scaler_metrics_value The current value for each scaler's metric that would be used by the HPA in computing the target average."
    ));
    assert!(text.contains(
        "# HELP keda_build_info Info metric, with static information about KEDA build like: version, git commit and Golang runtime info."
    ));
}

#[test]
fn telemetry_build_info_is_set_from_the_start() {
    let text = Metrics::new().render();
    let line = text
        .lines()
        .find(|l| l.starts_with("keda_build_info{"))
        .expect("build info series");
    assert!(line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))));
    assert!(line.contains("goversion=\"rustc\""));
    assert!(line.contains(&format!("goos=\"{}\"", std::env::consts::OS)));
    assert!(line.contains(&format!("goarch=\"{}\"", std::env::consts::ARCH)));
    assert!(line.ends_with(" 1"));
}

#[test]
fn telemetry_forget_object_removes_only_that_objects_series() {
    let metrics = populated();
    let other = labels("shop", "payments", 1);
    metrics.record_poll(&other, 3.0, false, Duration::from_millis(10));
    metrics.set_paused("shop", "payments", true);
    metrics.record_scale_loop_latency("shop", "payments", Duration::from_millis(1));

    metrics.forget_object("shop", "orders");

    let text = metrics.render();
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        !series.iter().any(|l| l.contains("\"orders\"")),
        "orders series left:\n{text}"
    );
    assert!(
        series
            .iter()
            .filter(|l| l.contains("scaledObject=\"payments\""))
            .count()
            >= 6,
        "payments series missing:\n{text}"
    );
    assert!(series.iter().any(|l| l.contains("resource=\"payments\"")));
}

#[test]
fn telemetry_successful_poll_creates_error_counters_at_zero() {
    let metrics = Metrics::new();
    metrics.record_poll(&labels("shop", "orders", 2), 1.0, false, Duration::ZERO);
    let text = metrics.render();
    assert!(text.contains(r#"keda_scaler_detail_errors_total{metric="s0-rabbitmq-orders",namespace="shop",scaledObject="orders",scaler="rabbitmq",triggerIndex="2",type="scaledobject"} 0"#));
    assert!(
        text.contains(
            r#"keda_scaled_object_errors_total{namespace="shop",scaledObject="orders"} 0"#
        )
    );
    assert!(text.contains(r#"keda_scaler_active{metric="s0-rabbitmq-orders",namespace="shop",scaledObject="orders",scaler="rabbitmq",triggerIndex="2",type="scaledobject"} 0"#));
}

#[test]
fn telemetry_cluster_scoped_resources_count_under_default_namespace() {
    let metrics = Metrics::new();
    metrics.resource_registered(RegisteredResource::ClusterTriggerAuthentication, "");
    metrics.resource_registered(RegisteredResource::TriggerAuthentication, "shop");
    metrics.resource_unregistered(RegisteredResource::TriggerAuthentication, "shop");
    let text = metrics.render();
    assert!(text.contains(
        r#"keda_resource_registered_total{namespace="default",type="cluster_trigger_authentication"} 1"#
    ));
    assert!(text.contains(
        r#"keda_resource_registered_total{namespace="shop",type="trigger_authentication"} 0"#
    ));
}

#[test]
fn telemetry_content_type_is_text_format_0_0_4() {
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4");
}

/// The per-object families are written directly (`object_text`); the text must be exactly what
/// `prometheus`'s own vectors and `TextEncoder` give for the same series: families by name,
/// series sorted by label values (triggerIndex as text: "10" before "2"), escapes included.
#[test]
fn telemetry_object_families_render_as_the_prometheus_encoder_does() {
    let metrics = Metrics::new();
    let expected = Registry::new();
    let vec = |name: &str, help: &str, labels: &[&str]| {
        let gauge = GaugeVec::new(Opts::new(name, help), labels).expect("valid");
        expected.register(Box::new(gauge.clone())).expect("once");
        gauge
    };
    let counter = |name: &str, help: &str, labels: &[&str]| {
        let counter = CounterVec::new(Opts::new(name, help), labels).expect("valid");
        expected.register(Box::new(counter.clone())).expect("once");
        counter
    };
    let help = |name: &str| {
        let family = crate::telemetry::object_series::FAMILIES
            .iter()
            .find(|f| f.0 == name);
        family.expect("known family").1
    };
    use crate::telemetry::object_series::{OBJECT_LABELS, SCALER_LABELS};
    let (scaler, object) = (SCALER_LABELS, OBJECT_LABELS);
    let value = vec(
        "keda_scaler_metrics_value",
        help("keda_scaler_metrics_value"),
        scaler,
    );
    let latency = vec(
        "keda_scaler_metrics_latency_seconds",
        help("keda_scaler_metrics_latency_seconds"),
        scaler,
    );
    let active = vec("keda_scaler_active", help("keda_scaler_active"), scaler);
    let trigger_errors = counter(
        "keda_scaler_detail_errors_total",
        help("keda_scaler_detail_errors_total"),
        scaler,
    );
    let object_errors = counter(
        "keda_scaled_object_errors_total",
        help("keda_scaled_object_errors_total"),
        object,
    );
    let paused = vec(
        "keda_scaled_object_paused",
        help("keda_scaled_object_paused"),
        object,
    );
    let loop_latency = vec(
        "keda_internal_scale_loop_latency_seconds",
        help("keda_internal_scale_loop_latency_seconds"),
        &["namespace", "type", "resource"],
    );
    let builds = counter(
        "tidescale_scaler_builds_total",
        help("tidescale_scaler_builds_total"),
        object,
    );
    let polls = [
        (
            "web",
            "api",
            10,
            "s10-prometheus",
            "we\"ird\\name\n",
            1.5,
            true,
        ),
        (
            "web",
            "api",
            2,
            "s2-prometheus",
            "prometheus",
            f64::INFINITY,
            false,
        ),
        (
            "shop",
            "orders",
            0,
            "s0-rabbitmq-orders",
            "rabbitmq",
            42.0,
            true,
        ),
        (
            "shop",
            "billing",
            0,
            "s0-rabbitmq-orders",
            "rabbitmq",
            0.25,
            false,
        ),
    ];
    for (namespace, name, index, metric, trigger, v, is_active) in polls {
        let labels = PollLabels {
            namespace,
            scaled_object: name,
            scaler: trigger,
            trigger_index: index,
            metric,
            resource_type: ResourceType::ScaledObject,
        };
        metrics.record_poll(&labels, v, is_active, Duration::from_millis(250));
        let index = index.to_string();
        let values = [
            namespace,
            metric,
            name,
            trigger,
            index.as_str(),
            "scaledobject",
        ];
        value.with_label_values(&values).set(v);
        latency.with_label_values(&values).set(0.25);
        active
            .with_label_values(&values)
            .set(if is_active { 1.0 } else { 0.0 });
        trigger_errors.with_label_values(&values).inc_by(0.0);
        object_errors
            .with_label_values(&[namespace, name])
            .inc_by(0.0);
    }
    let failing = PollLabels {
        namespace: "shop",
        scaled_object: "orders",
        scaler: "kafka",
        trigger_index: 1,
        metric: "s1-kafka-lag",
        resource_type: ResourceType::ScaledObject,
    };
    metrics.record_scaler_error(&failing);
    let values = [
        "shop",
        "s1-kafka-lag",
        "orders",
        "kafka",
        "1",
        "scaledobject",
    ];
    trigger_errors.with_label_values(&values).inc();
    object_errors.with_label_values(&["shop", "orders"]).inc();
    metrics.set_paused("shop", "billing", true);
    paused.with_label_values(&["shop", "billing"]).set(1.0);
    metrics.record_scale_loop_latency("web", "api", Duration::from_millis(5));
    loop_latency
        .with_label_values(&["web", "scaledobject", "api"])
        .set(0.005);
    metrics.record_scaler_build("shop", "orders");
    builds.with_label_values(&["shop", "orders"]).inc();

    let mut want = String::new();
    TextEncoder::new()
        .encode_utf8(&expected.gather(), &mut want)
        .expect("encodes");
    let ours: Vec<&str> = crate::telemetry::object_series::FAMILIES
        .iter()
        .map(|f| f.0)
        .collect();
    let family_of = |line: &str| {
        let line = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        line.split(['{', ' ']).next().unwrap_or_default().to_owned()
    };
    let rendered = metrics.render();
    let got: Vec<&str> = rendered
        .lines()
        .filter(|line| ours.contains(&family_of(line).as_str()))
        .collect();
    assert_eq!(got, want.lines().collect::<Vec<_>>());
    assert!(
        rendered.contains("keda_build_info"),
        "the registry's families are still there"
    );
}
