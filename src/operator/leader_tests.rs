//! Unit tests of the Lease record logic; the API round trips are in tests/operator_leader.rs.

use super::*;

fn config(endpoint: Option<&str>) -> LeaseConfig {
    LeaseConfig {
        namespace: "keda".into(),
        name: "tidescale-operator".into(),
        identity: "me".into(),
        lease_duration: Duration::from_millis(1_500),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(300),
        endpoint: endpoint.map(str::to_owned),
    }
}

fn lease(holder: &str, transitions: i32, resource_version: Option<&str>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("tidescale-operator".into()),
            resource_version: resource_version.map(str::to_owned),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

#[test]
fn takeover_counts_a_transition_and_stamps_a_new_acquire_time() {
    let now = MicroTime(Timestamp::now());
    let taken = desired(
        &config(Some("https://10.0.0.1:6443")),
        lease("other", 3, Some("7")),
        &now,
        false,
    );
    let spec = taken.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(spec.acquire_time, Some(now.clone()));
    assert_eq!(spec.renew_time, Some(now));
    assert_eq!(
        spec.lease_duration_seconds,
        Some(2),
        "1.5 s rounds up to whole seconds"
    );
    assert_eq!(
        taken.metadata.resource_version.as_deref(),
        Some("7"),
        "guarded by what was read"
    );
    assert_eq!(
        taken.metadata.annotations.unwrap()[ENDPOINT_ANNOTATION],
        "https://10.0.0.1:6443"
    );
}

#[test]
fn renewal_keeps_acquire_time_and_transitions() {
    let now = MicroTime(Timestamp::now());
    let renewed = desired(&config(None), lease("me", 3, Some("7")), &now, true);
    let spec = renewed.spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(3));
    assert_eq!(spec.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
    assert_eq!(spec.renew_time, Some(now));
}

#[test]
fn creation_starts_at_zero_transitions_and_a_missing_endpoint_clears_the_annotation() {
    let now = MicroTime(Timestamp::now());
    let mut base = lease("", 0, None);
    base.spec = None;
    base.metadata.annotations = Some([(ENDPOINT_ANNOTATION.to_owned(), "stale".to_owned())].into());
    let created = desired(&config(None), base, &now, false);
    assert_eq!(created.spec.unwrap().lease_transitions, Some(0));
    assert!(created.metadata.annotations.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn validity_counts_from_the_local_observation_not_the_remote_renew_time() {
    let start = Instant::now();
    // renewTime is 1970: a remote-clock check would call this expired; we just saw it.
    let first = observe(None, lease("other", 0, Some("1")), start);
    assert!(is_valid(&first, start + Duration::from_secs(14)));
    assert!(!is_valid(&first, start + Duration::from_secs(15)));
    // Same record, new resourceVersion (e.g. an unrelated label): observation time stays.
    let later = start + Duration::from_secs(10);
    let same = observe(Some(first), lease("other", 0, Some("2")), later);
    assert_eq!(same.at, start);
    // A renewal changes the record: validity restarts from now.
    let mut renewed = lease("other", 0, Some("3"));
    if let Some(spec) = renewed.spec.as_mut() {
        spec.renew_time = Some(MicroTime(Timestamp::now()));
    }
    let changed = observe(Some(same), renewed, later);
    assert_eq!(changed.at, later);
}

#[test]
fn an_empty_holder_is_no_holder() {
    assert_eq!(holder(&lease("", 1, None)), None);
    assert_eq!(holder(&lease("a", 1, None)), Some("a"));
}

#[test]
fn jitter_waits_between_one_and_two_point_two_retry_periods() {
    for _ in 0..1000 {
        let wait = jittered(Duration::from_secs(2));
        assert!(
            wait >= Duration::from_secs(2) && wait < Duration::from_millis(4_400),
            "{wait:?}"
        );
    }
}

#[test]
fn whole_seconds_rounds_up_and_never_reaches_zero() {
    assert_eq!(whole_seconds(Duration::from_secs(15)), 15);
    assert_eq!(whole_seconds(Duration::from_millis(1_001)), 2);
    assert_eq!(whole_seconds(Duration::from_millis(10)), 1);
}

#[test]
fn leadership_watch_wakes_receivers_only_on_change() {
    let watch = LeadershipWatch::default();
    let mut rx = watch.subscribe();
    assert_eq!(watch.current(), Leadership::default());
    watch.publish(Leadership::default());
    assert!(!rx.has_changed().unwrap());
    watch.publish(Leadership {
        is_leader: true,
        holder: Some("me".into()),
        leader_endpoint: None,
    });
    assert!(rx.has_changed().unwrap());
    assert!(rx.borrow_and_update().is_leader);
}
