use booking_service::config::Config;
use booking_service::startup::Application;
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    service_kit::telemetry::init(config.log.log_format);
    let shutdown = service_kit::shutdown::on_signal();
    let result = async {
        let app = Application::build(config).await?;
        app.run(shutdown).await
    }
    .await;
    service_kit::telemetry::exit_code("booking-service", result)
}
