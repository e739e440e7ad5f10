use rstest::rstest;

use super::*;

fn external(namespace: &str, metric: &str) -> Route {
    Route::ExternalMetric {
        namespace: namespace.to_owned(),
        metric: metric.to_owned(),
    }
}

fn custom(
    version: CustomVersion,
    namespace: Option<&str>,
    resource: &str,
    name: Option<&str>,
    metric: &str,
) -> Route {
    Route::CustomObjectMetric {
        version,
        namespace: namespace.map(str::to_owned),
        resource: resource.to_owned(),
        name: name.map_or(ObjectName::All, |n| ObjectName::Named(n.to_owned())),
        metric: metric.to_owned(),
    }
}

#[rstest]
#[case::group_list("/apis", Route::GroupList)]
#[case::external_group("/apis/external.metrics.k8s.io", Route::Group(MetricsGroup::External))]
#[case::custom_group("/apis/custom.metrics.k8s.io", Route::Group(MetricsGroup::Custom))]
#[case::external_resources(
    "/apis/external.metrics.k8s.io/v1beta1",
    Route::ResourceList(GroupVersion::External)
)]
#[case::custom_v2_resources(
    "/apis/custom.metrics.k8s.io/v1beta2",
    Route::ResourceList(GroupVersion::Custom(CustomVersion::V1beta2))
)]
#[case::custom_v1_resources(
    "/apis/custom.metrics.k8s.io/v1beta1",
    Route::ResourceList(GroupVersion::Custom(CustomVersion::V1beta1))
)]
#[case::external_read(
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/s0-rabbitmq-orders",
    external("shop", "s0-rabbitmq-orders")
)]
#[case::external_encoded_metric(
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/a%7Cb%3Ac",
    external("shop", "a|b:c")
)]
#[case::custom_named(
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/worker/s0-queue",
    custom(
        CustomVersion::V1beta2,
        Some("shop"),
        "deployments.apps",
        Some("worker"),
        "s0-queue"
    )
)]
#[case::custom_wildcard(
    "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/scaledobjects.keda.sh/*/s0-queue",
    custom(
        CustomVersion::V1beta1,
        Some("shop"),
        "scaledobjects.keda.sh",
        None,
        "s0-queue"
    )
)]
#[case::custom_cluster(
    "/apis/custom.metrics.k8s.io/v1beta2/nodes/n1/load",
    custom(CustomVersion::V1beta2, None, "nodes", Some("n1"), "load")
)]
#[case::custom_namespace_metric(
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/s0-queue",
    Route::CustomNamespaceMetric {
        version: CustomVersion::V1beta2,
        namespace: "shop".to_owned(),
        metric: "s0-queue".to_owned(),
    }
)]
#[case::healthz("/healthz", Route::Health { endpoint: HealthEndpoint::Healthz, check: None })]
#[case::readyz_check(
    "/readyz/ping",
    Route::Health { endpoint: HealthEndpoint::Readyz, check: Some("ping".to_owned()) }
)]
#[case::livez("/livez", Route::Health { endpoint: HealthEndpoint::Livez, check: None })]
#[case::openapi_v2("/openapi/v2", Route::OpenApiV2)]
#[case::openapi_v3("/openapi/v3", Route::OpenApiV3)]
#[case::openapi_v3_gv("/openapi/v3/apis/external.metrics.k8s.io/v1beta1", Route::OpenApiV3)]
#[case::version("/version", Route::Version)]
fn paths_parse_into_routes(#[case] path: &str, #[case] expected: Route) {
    assert_eq!(parse_path(path).unwrap(), expected);
}

#[rstest]
#[case::root("/", 404)]
#[case::no_slash("apis", 404)]
#[case::empty("", 404)]
#[case::trailing_slash("/apis/", 404)]
#[case::double_slash("/apis//external.metrics.k8s.io", 404)]
#[case::dot("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/.", 404)]
#[case::dot_dot("/apis/external.metrics.k8s.io/v1beta1/namespaces/../x", 404)]
#[case::encoded_dot_dot("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/%2E%2E", 404)]
#[case::unknown_group("/apis/metrics.k8s.io", 404)]
#[case::unknown_version("/apis/external.metrics.k8s.io/v1", 404)]
#[case::external_too_long("/apis/external.metrics.k8s.io/v1beta1/namespaces/a/b/c", 404)]
#[case::external_without_namespace("/apis/external.metrics.k8s.io/v1beta1/foo", 404)]
#[case::api_core("/api", 404)]
#[case::health_too_deep("/healthz/a/b", 404)]
#[case::bad_escape("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/a%zz", 400)]
#[case::truncated_escape("/apis/%2", 400)]
#[case::invalid_utf8("/apis/%ff", 400)]
fn bad_paths_are_rejected(#[case] path: &str, #[case] code: u16) {
    assert_eq!(parse_path(path).unwrap_err().status_code().as_u16(), code);
}

#[test]
fn encoded_slash_stays_inside_its_segment() {
    assert_eq!(
        parse_path("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/a%2Fb").unwrap(),
        external("shop", "a/b")
    );
}

#[rstest]
#[case::hpa_wire_form(
    "labelSelector=env+in+%28canary%2Cprod%29%2Cqueue%3Dorders",
    Some("env in (canary,prod),queue=orders")
)]
#[case::first_value_wins("labelSelector=a%3Db&labelSelector=c%3Dd", Some("a=b"))]
#[case::ignored_params("limit=5&resourceVersion=0&timeoutSeconds=3", None)]
#[case::empty_value("labelSelector=", Some(""))]
#[case::bare_key("labelSelector", Some(""))]
fn query_is_form_decoded(#[case] raw: &str, #[case] selector: Option<&str>) {
    assert_eq!(
        parse_query(raw).unwrap().label_selector.as_deref(),
        selector
    );
}

#[test]
fn health_parameters_are_read() {
    let query = parse_query("verbose&exclude=ping&exclude=ready").unwrap();
    assert!(query.verbose);
    assert_eq!(query.exclude, ["ping", "ready"]);
    let query = parse_query("metricLabelSelector=a%21%3Db").unwrap();
    assert_eq!(query.metric_label_selector.as_deref(), Some("a!=b"));
}

#[test]
fn bad_query_escapes_are_bad_requests() {
    assert_eq!(
        parse_query("labelSelector=%G1")
            .unwrap_err()
            .status_code()
            .as_u16(),
        400
    );
}

const READ: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/m";

#[rstest]
#[case::get(Method::GET, READ, None, Ok(()))]
#[case::head(Method::HEAD, READ, None, Ok(()))]
#[case::post(Method::POST, READ, None, Err(405))]
#[case::delete(Method::DELETE, "/apis", None, Err(405))]
#[case::unknown_path_beats_method(Method::POST, "/nope", None, Err(404))]
#[case::watch_true(Method::GET, READ, Some("watch=true"), Err(405))]
#[case::watch_one(Method::GET, READ, Some("watch=1"), Err(405))]
#[case::watch_false(Method::GET, READ, Some("watch=false"), Ok(()))]
#[case::watch_on_discovery(Method::GET, "/apis", Some("watch=true"), Ok(()))]
fn methods_and_watch(
    #[case] method: Method,
    #[case] path: &str,
    #[case] query: Option<&str>,
    #[case] expected: Result<(), u16>,
) {
    let result = parse(&method, path, query)
        .map(|_| ())
        .map_err(|e| e.status_code().as_u16());
    assert_eq!(result, expected);
}
