use std::sync::atomic::AtomicUsize;

use super::*;

fn record(value: f64) -> MetricRecord {
    MetricRecord {
        value,
        active: value > 0.0,
        timestamp: Timestamp::UNIX_EPOCH,
        error: None,
    }
}

fn described(target: &str, labels: &[(&str, &str)]) -> Described {
    Described {
        target: DescribedTarget {
            api_version: "apps/v1".to_owned(),
            kind: "Deployment".to_owned(),
            resource: "deployments.apps".to_owned(),
            name: target.to_owned(),
        },
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

struct Counting(AtomicUsize);

impl LiveMetrics for Counting {
    fn query(&self, _metric: &str) -> BoxFuture<'static, Result<MetricRecord, String>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(record(1.0)) })
    }
}

#[test]
fn polls_replace_records_and_names_match_case_insensitively() {
    let store = MetricStore::default();
    store.record_poll(
        "shop",
        "orders",
        BTreeMap::from([("s0-rabbitmq-Orders".to_owned(), record(7.0))]),
    );
    assert_eq!(
        store
            .get("shop", "orders", "s0-rabbitmq-orders")
            .map(|r| r.value),
        Some(7.0)
    );
    store.record_poll(
        "shop",
        "orders",
        BTreeMap::from([("s0-rabbitmq-Orders".to_owned(), record(2.0))]),
    );
    assert_eq!(
        store
            .get("shop", "orders", "S0-RABBITMQ-ORDERS")
            .map(|r| r.value),
        Some(2.0)
    );
    assert!(store.get("shop", "other", "s0-rabbitmq-orders").is_none());
    assert_eq!(store.object("shop", "orders").len(), 1);
    store.remove("shop", "orders");
    assert!(store.get("shop", "orders", "s0-rabbitmq-orders").is_none());
}

#[test]
fn description_and_live_queriers_survive_polls_and_go_with_remove() {
    let store = MetricStore::default();
    store.describe("shop", "orders", described("worker", &[("team", "a")]));
    let querier: Arc<dyn LiveMetrics> = Arc::new(Counting(AtomicUsize::new(0)));
    store.set_live("shop", "orders", "s0-redis", Arc::clone(&querier));
    store.record_poll(
        "shop",
        "orders",
        BTreeMap::from([("s0-redis".to_owned(), record(3.0))]),
    );
    let hit = store.hit("shop", "orders", "S0-REDIS").unwrap();
    assert_eq!(hit.metric, "s0-redis");
    assert_eq!(hit.record.map(|r| r.value), Some(3.0));
    assert_eq!(hit.described.unwrap().target.name, "worker");
    assert!(hit.live.is_some());
    store.clear_live("shop", "orders", "s0-redis");
    assert!(
        store
            .hit("shop", "orders", "s0-redis")
            .unwrap()
            .live
            .is_none()
    );
    store.remove("shop", "orders");
    assert!(store.hit("shop", "orders", "s0-redis").is_none());
    assert!(store.objects_in_namespace("shop").is_empty());
}

#[test]
fn a_live_metric_without_a_record_is_still_a_hit() {
    let store = MetricStore::default();
    store.set_live(
        "shop",
        "orders",
        "s0-redis",
        Arc::new(Counting(AtomicUsize::new(0))),
    );
    let hit = store.hit("shop", "orders", "s0-redis").unwrap();
    assert!(hit.record.is_none());
    assert!(hit.live.is_some());
    assert_eq!(
        store.metric_names(),
        BTreeSet::from(["s0-redis".to_owned()])
    );
}

#[test]
fn namespace_reads_filter_and_order_by_object_name() {
    let store = MetricStore::default();
    for (name, value) in [("b", 2.0), ("a", 1.0), ("c", 3.0)] {
        store.record_poll(
            "shop",
            name,
            BTreeMap::from([("s0-queue".to_owned(), record(value))]),
        );
    }
    store.record_poll(
        "other",
        "a",
        BTreeMap::from([("s0-queue".to_owned(), record(9.0))]),
    );
    let hits = store.hits_in_namespace("shop", "S0-QUEUE", |name, _| name != "c");
    let names: Vec<_> = hits.iter().map(|h| h.object.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        store
            .hits_in_namespace("shop", "s1-x", |_, _| true)
            .is_empty()
    );
    assert!(
        store
            .hits_in_namespace("none", "s0-queue", |_, _| true)
            .is_empty()
    );
    assert_eq!(store.objects_in_namespace("shop"), ["a", "b", "c"]);
}

#[test]
fn discovery_lists_lowercase_names_and_described_resources() {
    let store = MetricStore::default();
    store.record_poll(
        "shop",
        "orders",
        BTreeMap::from([
            ("s0-Queue".to_owned(), record(1.0)),
            ("s1-lag".to_owned(), record(1.0)),
        ]),
    );
    store.record_poll(
        "web",
        "api",
        BTreeMap::from([("s0-queue".to_owned(), record(1.0))]),
    );
    store.describe("shop", "orders", described("worker", &[]));
    assert_eq!(
        store.metric_names().into_iter().collect::<Vec<_>>(),
        ["s0-queue", "s1-lag"]
    );
    let pairs: Vec<_> = store
        .described_resources("scaledobjects.keda.sh")
        .into_iter()
        .map(|(r, m)| format!("{r}/{m}"))
        .collect();
    assert_eq!(
        pairs,
        [
            "deployments.apps/s0-queue",
            "deployments.apps/s1-lag",
            "scaledobjects.keda.sh/s0-queue",
            "scaledobjects.keda.sh/s1-lag",
        ]
    );
}

#[test]
fn shape_generation_moves_on_new_names_but_not_on_new_values() {
    let store = MetricStore::default();
    let start = store.shape_generation();
    let poll = |value| BTreeMap::from([("s0-queue".to_owned(), record(value))]);
    store.record_poll("shop", "orders", poll(1.0));
    let after_first = store.shape_generation();
    assert_ne!(after_first, start);
    store.record_poll("shop", "orders", poll(2.0));
    assert_eq!(store.shape_generation(), after_first);
    store.describe("shop", "orders", described("worker", &[]));
    let described_once = store.shape_generation();
    assert_ne!(described_once, after_first);
    store.describe("shop", "orders", described("worker", &[]));
    assert_eq!(store.shape_generation(), described_once);
    store.remove("shop", "orders");
    assert_ne!(store.shape_generation(), described_once);
}
