//! Connecting to PostgreSQL, creating the service's own database when it is
//! missing (one Aurora cluster serves both services), and migrating.

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::config::DatabaseArgs;

/// Prepares the database and returns the pool of the HTTP handlers. With
/// `RUN_MIGRATIONS` it first creates the database if missing and applies
/// `migrators` (on a connection of their own, without the session timeouts: a
/// migration may rightly take longer than any request).
pub async fn connect(
    args: &DatabaseArgs,
    options: PgConnectOptions,
    migrators: &[&Migrator],
) -> anyhow::Result<PgPool> {
    let target = describe(&options);
    if args.run_migrations {
        ensure_database(&options)
            .await
            .with_context(|| format!("Failed to prepare the {target}"))?;
        let mut conn = options
            .connect()
            .await
            .with_context(|| format!("Failed to connect to the {target}"))?;
        for migrator in migrators {
            migrator
                .run(&mut conn)
                .await
                .context("Failed to apply database migrations")?;
        }
        conn.close().await.ok();
    }
    pool(args, &options, args.max_connections).await
}

/// A pool on the service's database whose every connection carries the
/// session timeouts (`DATABASE_STATEMENT_TIMEOUT`, `DATABASE_LOCK_TIMEOUT`,
/// `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT`). Background loops get one of their
/// own, so they and the HTTP handlers never wait for each other's connections.
pub async fn pool(
    args: &DatabaseArgs,
    options: &PgConnectOptions,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(args.acquire_timeout)
        .connect_with(options.clone().options(args.session_timeouts()))
        .await
        .with_context(|| format!("Failed to connect to the {}", describe(options)))
}

/// Where `options` point, for start-up errors (never the password).
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "database {:?} at {}:{} as {:?} (DATABASE_URL, or PGHOST/PGPORT/PGUSER/PGDATABASE)",
        options.get_database().unwrap_or_default(),
        options.get_host(),
        options.get_port(),
        options.get_username(),
    )
}

/// Creates the database named in `options` when it does not exist yet.
pub async fn ensure_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options
        .get_database()
        .context("Failed to find a database name in the connection settings")?
        .to_owned();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("Failed to connect to the `postgres` database to check that ours exists")?;
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .context("Failed to look up the database")?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {quoted}")))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another replica won the race: that is fine.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e).context("Failed to create the database"),
        }
    }
    admin.close().await.ok();
    Ok(())
}
