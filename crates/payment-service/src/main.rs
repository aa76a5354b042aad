use clap::Parser;
use payment_service::config::Config;
use payment_service::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    service_kit::telemetry::init(config.log.log_format);
    let shutdown = service_kit::shutdown::on_signal();
    let app = Application::build(config).await?;
    app.run(shutdown).await
}
