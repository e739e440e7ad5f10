//! `kafka-worker`: consume a Kafka topic in a consumer group (see
//! `tidescale_sample_workers::kafka`).

fn main() -> std::process::ExitCode {
    tidescale_sample_workers::main_with("kafka-worker", |shutdown| async move {
        let config = tidescale_sample_workers::kafka::Config::from_env()?;
        tidescale_sample_workers::kafka::run(&config, shutdown, Default::default()).await
    })
}
