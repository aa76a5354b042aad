use booking_service::config::Config;
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    service_kit::telemetry::init(config.log.log_format);
    let shutdown = service_kit::shutdown::on_signal();
    let result = async {
        let app = booking_service::startup::build(config).await?;
        app.run(shutdown).await
    }
    .await;
    service_kit::telemetry::exit_code("booking-service", result)
}
