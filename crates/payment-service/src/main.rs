use clap::Parser;
use payment_service::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    service_kit::telemetry::init(config.log.log_format);
    let shutdown = service_kit::shutdown::on_signal();
    let result = async {
        let app = payment_service::startup::build(config).await?;
        app.run(shutdown).await
    }
    .await;
    service_kit::telemetry::exit_code("payment-service", result)
}
