//! Offline parsing (`tidescale check`) of values the input does not hold: a required key that
//! may come from an unknown auth param or env var is "unresolved", not "missing"; real
//! problems still win.

use std::collections::{BTreeMap, BTreeSet};

use tidescale_scalers::{ScalerConfig, ScalerError, Unresolved, parse_only};

fn rabbitmq(metadata: &[(&str, &str)], unresolved: Unresolved) -> ScalerConfig {
    ScalerConfig {
        trigger_type: "rabbitmq".into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        unresolved,
        ..ScalerConfig::default()
    }
}

fn kind(cfg: &ScalerConfig) -> &'static str {
    parse_only(cfg).expect_err("not parseable offline").kind()
}

#[test]
fn unknown_auth_param_is_unresolved() {
    let unresolved = Unresolved {
        auth_params: BTreeSet::from(["host".to_owned()]),
        ..Unresolved::default()
    };
    let err = parse_only(&rabbitmq(&[("queueName", "q")], unresolved)).unwrap_err();
    assert!(matches!(err, ScalerError::Unresolved { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "rabbitmq: not fully checked offline: the value of host comes from an object the input does not hold"
    );
    assert!(!err.is_config());
}

#[test]
fn unknown_trigger_authentication_makes_every_auth_param_unresolved() {
    let unresolved = Unresolved {
        any_auth_param: true,
        ..Unresolved::default()
    };
    assert_eq!(
        kind(&rabbitmq(&[("queueName", "q")], unresolved)),
        "unresolved"
    );
}

#[test]
fn unknown_env_var_is_unresolved_only_for_its_from_env_key() {
    let unresolved = Unresolved {
        env: BTreeSet::from(["AMQP_URL".to_owned()]),
        ..Unresolved::default()
    };
    let cfg = rabbitmq(
        &[("queueName", "q"), ("hostFromEnv", "AMQP_URL")],
        unresolved.clone(),
    );
    assert_eq!(kind(&cfg), "unresolved");
    let cfg = rabbitmq(&[("queueName", "q"), ("hostFromEnv", "OTHER")], unresolved);
    assert_eq!(kind(&cfg), "config", "OTHER is known to be absent");
}

#[test]
fn real_problems_win_over_unresolved_ones() {
    let unresolved = Unresolved {
        any_auth_param: true,
        ..Unresolved::default()
    };
    let cfg = rabbitmq(&[("queueName", "q"), ("pageSize", "many")], unresolved);
    let err = parse_only(&cfg).unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("pageSize"), "{err}");
}

#[test]
fn the_operator_never_sees_unresolved() {
    let err = parse_only(&rabbitmq(&[("queueName", "q")], Unresolved::default())).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing required parameter \"host\""),
        "{err}"
    );
}
