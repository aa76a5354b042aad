//! Connecting to PostgreSQL, creating the service's own database when it is
//! missing (one Aurora cluster serves both services), and migrating.

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::config::DatabaseArgs;

/// Builds the pool; with `run_migrations`, first creates the database if missing
/// and then applies `migrators` in order (each keeps its own history table).
pub async fn connect(
    args: &DatabaseArgs,
    options: PgConnectOptions,
    migrators: &[Migrator],
) -> anyhow::Result<PgPool> {
    // Every start-up failure names where it tried (never the password).
    let target = format!(
        "database {:?} at {}:{} as {:?} (DATABASE_URL, or PGHOST/PGPORT/PGUSER/PGDATABASE)",
        options.get_database().unwrap_or_default(),
        options.get_host(),
        options.get_port(),
        options.get_username(),
    );
    if args.run_migrations {
        ensure_database(&options)
            .await
            .with_context(|| format!("Failed to prepare the {target}"))?;
    }
    let pool = PgPoolOptions::new()
        .max_connections(args.max_connections)
        .acquire_timeout(args.acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("Failed to connect to the {target}"))?;
    if args.run_migrations {
        migrate(&pool, migrators).await?;
    }
    Ok(pool)
}

/// Applies `migrators` in order.
pub async fn migrate(pool: &PgPool, migrators: &[Migrator]) -> anyhow::Result<()> {
    for migrator in migrators {
        migrator
            .run(pool)
            .await
            .context("Failed to apply database migrations")?;
    }
    Ok(())
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
