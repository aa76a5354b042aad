//! Start-up: what cannot work is refused, naming the setting.

use clap::Parser;
use payment_service::config::Config;

use crate::helpers::*;

async fn refusal(args: &[&str]) -> String {
    // The relay of payment events is not what these tests are about.
    let relay_off = (!args
        .iter()
        .any(|a| a.contains("relay") || a.contains("payment-events")))
    .then_some("--relay-enabled=false");
    let args = std::iter::once("payment-service")
        .chain(relay_off)
        .chain(args.iter().copied());
    match payment_service::startup::build(Config::parse_from(args)).await {
        Ok(_) => panic!("the application started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_naming_the_variable() {
    for (args, variable) in [
        (&["--consumer-wait-time=0s"][..], "CONSUMER_WAIT_TIME"),
        (
            &["--statement-timeout=0s"][..],
            "DATABASE_STATEMENT_TIMEOUT",
        ),
        (&["--lock-timeout=0s"][..], "DATABASE_LOCK_TIMEOUT"),
        (
            &["--idle-in-transaction-timeout=0s"][..],
            "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
        ),
        (&["--acquire-timeout=0s"][..], "DATABASE_ACQUIRE_TIMEOUT"),
        (
            &[
                "--consumer-concurrency=8",
                "--consumer-database-max-connections=8",
            ][..],
            "CONSUMER_DATABASE_MAX_CONNECTIONS",
        ),
    ] {
        // Nothing is connected before the settings are checked: these point nowhere.
        let mut all = vec![
            "--database-url=postgres://nobody@127.0.0.1:1/none",
            "--sqs-queue-url=http://127.0.0.1:1/000000000000/none.fifo",
        ];
        all.extend_from_slice(args);
        let said = refusal(&all).await;
        assert!(said.contains(variable), "{args:?}: {said}");
    }
}

#[tokio::test]
async fn a_missing_queue_or_an_unmigrated_database_is_refused() {
    let client = sqs().await;
    let gone = outbox::sqs::create_queue(
        &client,
        &format!("gone-{}.fifo", uuid::Uuid::new_v4().simple()),
    )
    .await
    .unwrap();
    client.delete_queue().queue_url(&gone).send().await.unwrap();
    let database = new_database_url();
    let said = refusal(&[
        &format!("--database-url={database}"),
        &format!("--sqs-queue-url={gone}"),
    ])
    .await;
    assert!(
        said.contains("SQS_QUEUE_URL") && said.contains("does not exist"),
        "{said}"
    );

    service_kit::db::ensure_database(&database.parse().unwrap())
        .await
        .unwrap();
    let said = refusal(&[
        &format!("--database-url={database}"),
        "--consumer-enabled=false",
        "--run-migrations=false",
    ])
    .await;
    assert!(said.contains("RUN_MIGRATIONS=false"), "{said}");
}
