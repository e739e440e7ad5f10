//! `servicebus-worker`: consume an Azure Service Bus queue (see
//! `tidescale_sample_workers::servicebus`).

fn main() -> std::process::ExitCode {
    tidescale_sample_workers::main_with("servicebus-worker", |shutdown| async move {
        let config = tidescale_sample_workers::servicebus::Config::from_env()?;
        tidescale_sample_workers::servicebus::run(&config, shutdown, Default::default()).await
    })
}
