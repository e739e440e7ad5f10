//! `rabbitmq-worker`: consume a RabbitMQ queue (see `tidescale_sample_workers::rabbitmq`).

fn main() -> std::process::ExitCode {
    tidescale_sample_workers::main_with("rabbitmq-worker", |shutdown| async move {
        let config = tidescale_sample_workers::rabbitmq::Config::from_env()?;
        tidescale_sample_workers::rabbitmq::run(&config, shutdown, Default::default()).await
    })
}
