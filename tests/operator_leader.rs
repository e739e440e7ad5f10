//! Leader election on the sandbox API server with short durations: exactly one candidate
//! leads; a released Lease is taken over within about a retry period, an abandoned one after
//! the lease duration and not before; a conflicting write is retried; a leader cut off from
//! the API steps down before its lease could be taken; a poll in flight when leadership is lost
//! writes nothing; and two full operators on a RabbitMQ ScaledObject where only the leader
//! polls and scales, until it stops and the other does.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{create, create_namespace, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use tidescale::dev::{DevCluster, dev_operator_args};
use tidescale::operator::leader::{ENDPOINT_ANNOTATION, LeaderElector};
use tidescale::operator::{LeadershipWatch, LeaseConfig, Telemetry, run_with_leader_election};
use tidescale_sandbox::SandboxConfig;
use tidescale_sandbox::controllers::{ControllerConfig, PodTimings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "default";

async fn cluster() -> DevCluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,kube=warn,tidescale_sandbox=warn",
        ))
        .with_test_writer()
        .try_init();
    let controllers = ControllerConfig {
        tick: Duration::from_millis(100),
        pods: PodTimings {
            start_delay: Duration::from_millis(100),
            ready_delay: Duration::from_millis(100),
            ..PodTimings::default()
        },
        ..ControllerConfig::default()
    };
    DevCluster::start(SandboxConfig::default(), controllers)
        .await
        .expect("cluster starts")
}

/// Lease 2 s, renew deadline 1.5 s, retry 0.3 s.
fn lease_config(lease: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: NAMESPACE.into(),
        name: lease.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1_500),
        retry_period: Duration::from_millis(300),
        endpoint: Some(format!("https://{identity}.example:6443")),
    }
}

/// One candidate running client-go's loops, releasing the Lease when cancelled.
struct Candidate {
    leadership: LeadershipWatch,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Candidate {
    async fn start(dev: &DevCluster, config: LeaseConfig) -> Self {
        let client = dev.client().await.expect("client");
        let leadership = LeadershipWatch::default();
        let cancel = CancellationToken::new();
        let mut elector = LeaderElector::new(client, config, leadership.clone());
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                elector.run(&cancel).await;
                elector.release().await;
            }
        });
        Self {
            leadership,
            cancel,
            task,
        }
    }

    fn leads(&self) -> bool {
        self.leadership.current().is_leader
    }
}

/// Wait until exactly one of `candidates` leads; its index.
async fn one_leader(candidates: &[&Candidate], within: Duration) -> usize {
    eventually("a leader", within, || async move {
        let leaders: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].leads())
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        leaders.first().copied()
    })
    .await
}

/// Time until `candidate` leads, sampled every 10 ms.
async fn time_until_leading(candidate: &Candidate, within: Duration) -> Duration {
    let start = Instant::now();
    while !candidate.leads() {
        assert!(start.elapsed() < within, "no takeover within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn lease(dev: &DevCluster, name: &str) -> Lease {
    let api: Api<Lease> = Api::namespaced(dev.client().await.expect("client"), NAMESPACE);
    api.get(name).await.expect("the lease exists")
}

fn spec(lease: &Lease) -> &k8s_openapi::api::coordination::v1::LeaseSpec {
    lease.spec.as_ref().expect("lease spec")
}

/// The `orders` Deployment at 0 replicas in `namespace`, as YAML.
fn orders_deployment(namespace: &str) -> String {
    format!(
        "metadata: {{name: orders, namespace: {namespace}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: orders}}}}\n  template:\n    metadata: {{labels: {{app: orders}}}}\n    spec: {{containers: [{{name: orders, image: 'orders:1'}}]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_leads_and_a_released_lease_is_taken_over_within_a_retry_period() {
    let dev = cluster().await;
    let a = Candidate::start(&dev, lease_config("release", "a")).await;
    let b = Candidate::start(&dev, lease_config("release", "b")).await;
    let leader = one_leader(&[&a, &b], Duration::from_secs(5)).await;
    let (leader, standby) = if leader == 0 { (a, b) } else { (b, a) };
    // Over several renewals, never two leaders, and the follower knows who leads and where.
    for _ in 0..30 {
        assert!(
            leader.leads() && !standby.leads(),
            "one leader, one standby"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = standby.leadership.current();
    let holder = leader
        .leadership
        .current()
        .holder
        .expect("the leader knows itself");
    assert_eq!(seen.holder.as_deref(), Some(holder.as_str()));
    assert_eq!(
        seen.leader_endpoint,
        Some(format!("https://{holder}.example:6443"))
    );
    let held = lease(&dev, "release").await;
    assert_eq!(
        spec(&held).holder_identity.as_deref(),
        Some(holder.as_str())
    );
    assert_eq!(spec(&held).lease_duration_seconds, Some(2));
    assert_eq!(spec(&held).lease_transitions, Some(0));

    leader.cancel.cancel();
    let took = time_until_leading(&standby, Duration::from_secs(5)).await;
    leader.task.await.expect("the old leader stops");
    eprintln!("takeover after release: {took:?}");
    assert!(
        took < Duration::from_millis(1_500),
        "release hands over within ~a jittered retry period (≤ 0.66 s), not the 2 s lease: {took:?}"
    );
    let taken = lease(&dev, "release").await;
    assert_ne!(
        spec(&taken).holder_identity.as_deref(),
        Some(holder.as_str())
    );
    assert_eq!(spec(&taken).lease_transitions, Some(1));
    let new_holder = spec(&taken).holder_identity.clone().unwrap_or_default();
    assert_eq!(
        taken.metadata.annotations.unwrap_or_default()[ENDPOINT_ANNOTATION],
        format!("https://{new_holder}.example:6443"),
        "the new leader advertises its own endpoint"
    );
    standby.cancel.cancel();
    standby.task.await.expect("stops");
    let released = lease(&dev, "release").await;
    assert_eq!(spec(&released).holder_identity.as_deref(), Some(""));
    assert_eq!(spec(&released).lease_duration_seconds, Some(1));
    dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_lease_is_taken_over_after_the_lease_duration_and_not_before() {
    let dev = cluster().await;
    let a = Candidate::start(&dev, lease_config("abandon", "a")).await;
    assert_eq!(one_leader(&[&a], Duration::from_secs(5)).await, 0);
    let b = Candidate::start(&dev, lease_config("abandon", "b")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b.leads(), "a valid lease is not taken");
    // Killed without release: the Lease still names `a` until it expires.
    a.task.abort();
    let _ = a.task.await;
    let took = time_until_leading(&b, Duration::from_secs(6)).await;
    eprintln!("takeover after abandonment: {took:?}");
    // `b` saw the last renewal at most one retry period (0.3 s) before the abort.
    assert!(
        took >= Duration::from_millis(1_600),
        "took over before the 2 s lease could expire: {took:?}"
    );
    assert!(
        took < Duration::from_millis(4_000),
        "lease 2 s + one jittered retry ≤ 0.66 s: {took:?}"
    );
    let taken = lease(&dev, "abandon").await;
    assert_eq!(spec(&taken).holder_identity.as_deref(), Some("b"));
    assert_eq!(spec(&taken).lease_transitions, Some(1));
    b.cancel.cancel();
    b.task.await.expect("stops");
    dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_update_of_the_lease_is_retried_without_losing_leadership() {
    let dev = cluster().await;
    let a = Candidate::start(&dev, lease_config("conflict", "a")).await;
    one_leader(&[&a], Duration::from_secs(5)).await;
    let mut changes = a.leadership.subscribe();
    changes.borrow_and_update();
    let api: Api<Lease> = Api::namespaced(dev.client().await.expect("client"), NAMESPACE);
    // Each write moves the resourceVersion, so the leader's next renewal (with the version it
    // wrote last) gets a 409 and must read and write again.
    let mut conflicts_made = 0;
    for round in 0..8 {
        let mut current = api.get("conflict").await.expect("lease");
        current
            .metadata
            .labels
            .get_or_insert_default()
            .insert("round".into(), round.to_string());
        if api
            .replace("conflict", &PostParams::default(), &current)
            .await
            .is_ok()
        {
            conflicts_made += 1;
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    assert!(
        conflicts_made >= 6,
        "the test's own writes mostly succeed: {conflicts_made}"
    );
    assert!(a.leads(), "still leading");
    assert!(
        !changes.has_changed().unwrap(),
        "leadership never flickered: {:?}",
        *changes.borrow()
    );
    let before = spec(&api.get("conflict").await.unwrap()).renew_time.clone();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = api.get("conflict").await.unwrap();
    assert!(spec(&after).renew_time > before, "renewals go on");
    assert_eq!(
        after.metadata.labels.unwrap()["round"],
        "7",
        "our write was kept, not overwritten"
    );
    a.cancel.cancel();
    a.task.await.expect("stops");
    dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_steps_down_before_its_lease_expires() {
    let mut dev = cluster().await;
    let config = |identity| LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        ..lease_config("cutoff", identity)
    };
    let a = Candidate::start(&dev, config("a")).await;
    let b = Candidate::start(&dev, config("b")).await;
    let leader = one_leader(&[&a, &b], Duration::from_secs(5)).await;
    let candidates = [&a, &b];
    dev.sandbox.shutdown().await;
    let cut = Instant::now();
    while candidates[leader].leads() {
        assert!(cut.elapsed() < Duration::from_secs(5), "still leading");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stepped_down = cut.elapsed();
    eprintln!("stepped down after: {stepped_down:?}");
    // Last renewal ≤ 0.3 s before the cut; deadline 2 s after the next try.
    assert!(
        stepped_down < Duration::from_millis(2_800),
        "steps down within retry + renew deadline, before the 3 s lease: {stepped_down:?}"
    );
    assert!(
        stepped_down >= Duration::from_millis(1_500),
        "keeps trying for the renew deadline: {stepped_down:?}"
    );
    assert!(!a.leads() && !b.leads(), "nobody leads without the API");
    dev.sandbox.restart().await.expect("the API comes back");
    one_leader(&[&a, &b], Duration::from_secs(10)).await;
    for candidate in [a, b] {
        candidate.cancel.cancel();
        candidate.task.await.expect("stops");
    }
    dev.shutdown().await;
}

#[path = "operator_leader/in_flight.rs"]
mod in_flight;
#[path = "operator_leader/rabbitmq.rs"]
mod rabbitmq;
