//! The leader-election flags of `tidescale operator` and their validation.
//!
//! Names and defaults follow controller-runtime (which KEDA uses): `--leader-elect`, a Lease
//! named by `--leader-election-id`, 15 s / 10 s / 2 s. The Lease's namespace is the pod's
//! namespace, which the adapter's `--pod-namespace` (env `POD_NAMESPACE`) already carries, so
//! there is no second flag reading the same variable.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Default name of the Lease.
pub const DEFAULT_LEASE_NAME: &str = "tidescale-operator";

/// Flags of leader election.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionArgs {
    /// Elect a leader with a Lease so several replicas can run; only the leader polls and
    /// scales. Off by default so a local `tidescale operator` runs alone. Accepts
    /// `--leader-elect`, `--leader-elect=true|false`.
    #[arg(
        long,
        env = "TIDESCALE_LEADER_ELECT",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub leader_elect: bool,
    /// Name of the Lease (in the pod's namespace, `--pod-namespace`).
    #[arg(
        long,
        env = "TIDESCALE_LEADER_ELECTION_ID",
        default_value = DEFAULT_LEASE_NAME,
        value_name = "NAME"
    )]
    pub leader_election_id: String,
    /// This replica's identity in the Lease; defaults to `<hostname>_<random>`.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub leader_election_identity: Option<String>,
    /// How long a standby waits after last seeing the Lease change before taking over.
    #[arg(
        long,
        env = "TIDESCALE_LEADER_ELECTION_LEASE_DURATION",
        default_value = "15s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub leader_election_lease_duration: Duration,
    /// How long the leader keeps retrying a failed renewal before it steps down.
    #[arg(
        long,
        env = "TIDESCALE_LEADER_ELECTION_RENEW_DEADLINE",
        default_value = "10s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub leader_election_renew_deadline: Duration,
    /// Time between two tries to acquire or renew the Lease.
    #[arg(
        long,
        env = "TIDESCALE_LEADER_ELECTION_RETRY_PERIOD",
        default_value = "2s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub leader_election_retry_period: Duration,
    /// This pod's IP: the leader advertises `https://<ip>:<adapter port>` on the Lease so
    /// followers can forward metric reads to it.
    #[arg(long, env = "POD_IP", value_name = "IP")]
    pub pod_ip: Option<IpAddr>,
}

/// Everything one candidate needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's `holderIdentity`.
    pub identity: String,
    /// How long a lease stays valid after it was last seen changing.
    pub lease_duration: Duration,
    /// How long a leader retries renewing before it steps down.
    pub renew_deadline: Duration,
    /// Time between tries.
    pub retry_period: Duration,
    /// The metrics-adapter endpoint written on the Lease while leading.
    pub endpoint: Option<String>,
}

/// Durations that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration is zero.
    #[error("--leader-election-{0} must be greater than zero")]
    Zero(&'static str),
    /// The lease would expire before the leader gives up renewing it.
    #[error(
        "--leader-election-lease-duration ({lease:?}) must be greater than --leader-election-renew-deadline ({renew:?})"
    )]
    LeaseNotAboveRenew {
        /// The lease duration.
        lease: Duration,
        /// The renew deadline.
        renew: Duration,
    },
    /// The leader could not retry even once, with jitter, before its deadline.
    #[error(
        "--leader-election-renew-deadline ({renew:?}) must be greater than 1.2 × --leader-election-retry-period ({retry:?})"
    )]
    RenewNotAboveRetry {
        /// The renew deadline.
        renew: Duration,
        /// The retry period.
        retry: Duration,
    },
}

impl LeaseConfig {
    /// Check client-go's rules: all > 0, lease > renew, renew > 1.2 × retry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("lease-duration", self.lease_duration),
            ("renew-deadline", self.renew_deadline),
            ("retry-period", self.retry_period),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotAboveRenew {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.renew_deadline.as_secs_f64()
            <= super::leader::JITTER_FACTOR * self.retry_period.as_secs_f64()
        {
            return Err(ConfigError::RenewNotAboveRetry {
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        Ok(())
    }
}

impl LeaderElectionArgs {
    /// The validated Lease settings, or `None` when leader election is off. `namespace` is
    /// the pod's namespace; `adapter` the adapter's bind address when it serves.
    pub fn config(
        &self,
        namespace: &str,
        adapter: Option<SocketAddr>,
    ) -> Result<Option<LeaseConfig>, ConfigError> {
        if !self.leader_elect {
            return Ok(None);
        }
        let endpoint = self
            .pod_ip
            .zip(adapter)
            .map(|(ip, adapter)| format!("https://{}", SocketAddr::new(ip, adapter.port())));
        let config = LeaseConfig {
            namespace: namespace.to_owned(),
            name: self.leader_election_id.clone(),
            identity: self
                .leader_election_identity
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(default_identity),
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
            endpoint,
        };
        config.validate()?;
        Ok(Some(config))
    }
}

/// `<hostname>_<8 hex digits>`, client-go's convention: a restarted process is a new holder.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tidescale".to_owned());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// Parse a Go-style duration: one or more `<number><unit>` with unit `ms`, `s`, `m` or `h`
/// (`15s`, `1.5s`, `300ms`, `1m30s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: expected e.g. 15s, 1.5s, 300ms, 1m30s");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_end);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case::seconds("15s", 15_000)]
    #[case::fraction("1.5s", 1_500)]
    #[case::millis("300ms", 300)]
    #[case::combined("1m30s", 90_000)]
    #[case::hours("1h", 3_600_000)]
    fn parses_go_durations(#[case] text: &str, #[case] millis: u64) {
        assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis)));
    }

    #[rstest::rstest]
    #[case::empty("")]
    #[case::no_unit("15")]
    #[case::unknown_unit("15d")]
    #[case::words("soon")]
    fn rejects_other_text(#[case] text: &str) {
        assert!(parse_duration(text).is_err(), "{text}");
    }

    fn config(lease: u64, renew: u64, retry: u64) -> LeaseConfig {
        LeaseConfig {
            namespace: "keda".into(),
            name: DEFAULT_LEASE_NAME.into(),
            identity: "me".into(),
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
            endpoint: None,
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_orders_are_explained() {
        assert_eq!(config(15_000, 10_000, 2_000).validate(), Ok(()));
        assert_eq!(config(2_000, 1_500, 300).validate(), Ok(()));
        let error = config(10_000, 10_000, 2_000).validate().unwrap_err();
        assert!(error.to_string().contains("lease-duration"), "{error}");
        let error = config(15_000, 2_400, 2_000).validate().unwrap_err();
        assert!(error.to_string().contains("1.2 ×"), "{error}");
        assert_eq!(
            config(15_000, 10_000, 0).validate(),
            Err(ConfigError::Zero("retry-period"))
        );
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        election: LeaderElectionArgs,
    }

    #[test]
    fn flags_default_to_controller_runtime_values_and_election_off() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["t"]).unwrap();
        assert!(!cli.election.leader_elect);
        assert_eq!(cli.election.config("keda", None), Ok(None));
        let cli = Cli::try_parse_from([
            "t",
            "--leader-elect",
            "--leader-election-identity=pod-a",
            "--pod-ip=10.1.2.3",
        ])
        .unwrap();
        let config = cli
            .election
            .config("keda", Some("0.0.0.0:6443".parse().unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(config.identity, "pod-a");
        assert_eq!(config.name, DEFAULT_LEASE_NAME);
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry_period, Duration::from_secs(2));
        assert_eq!(config.endpoint.as_deref(), Some("https://10.1.2.3:6443"));
        let cli = Cli::try_parse_from(["t", "--leader-elect=false"]).unwrap();
        assert!(!cli.election.leader_elect);
    }
}
