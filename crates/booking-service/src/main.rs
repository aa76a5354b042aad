use booking_service::config::Config;
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let telemetry = service_kit::telemetry::init(&config.log, "booking-service");
    let shutdown = service_kit::shutdown::on_signal();
    let result = async {
        // Dropped at the end: the spans not exported yet are flushed.
        let _telemetry = telemetry?;
        let app = booking_service::startup::build(config).await?;
        app.run(shutdown).await
    }
    .await;
    service_kit::telemetry::exit_code("booking-service", result)
}
