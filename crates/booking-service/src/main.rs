use booking_service::config::Config;
use booking_service::startup::Application;
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let telemetry = service_kit::telemetry::init(&config.log, "booking-service");
    let shutdown = service_kit::shutdown::on_signal();
    let result = async {
        // Dropped at the end: the spans not exported yet are flushed.
        let _telemetry = telemetry?;
        let app = Application::build(config).await?;
        app.run(shutdown).await
    }
    .await;
    service_kit::telemetry::exit_code("booking-service", result)
}
