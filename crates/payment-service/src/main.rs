use clap::Parser;
use payment_service::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let telemetry = service_kit::telemetry::init(&config.log, "payment-service");
    let shutdown = service_kit::shutdown::on_signal();
    let result = async {
        // Dropped at the end: the spans not exported yet are flushed.
        let _telemetry = telemetry?;
        let app = payment_service::startup::build(config).await?;
        app.run(shutdown).await
    }
    .await;
    service_kit::telemetry::exit_code("payment-service", result)
}
