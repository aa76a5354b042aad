//! Connecting to PostgreSQL, creating the service's own database when it is
//! missing (one Aurora cluster serves both services), and migrating; with
//! `RUN_MIGRATIONS=false`, refusing a database whose schema is not the one the
//! binary needs.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::config::DatabaseArgs;

/// Prepares the database and returns the pool of the HTTP handlers. With
/// `RUN_MIGRATIONS` it first creates the database if missing and applies
/// `migrators` (on a connection of their own, without the session timeouts: a
/// migration may rightly take longer than any request); without, it checks
/// that every migration of `migrators` is applied ([`verify_migrations`]).
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
    } else {
        let mut conn = options
            .connect()
            .await
            .with_context(|| format!("Failed to connect to the {target}"))?;
        verify_migrations(&mut conn, migrators).await?;
        conn.close().await.ok();
    }
    pool(args, &options, args.max_connections).await
}

/// Refuses (naming `RUN_MIGRATIONS`) a database that lacks a migration of
/// `migrators`, or holds one that differs from the binary's or failed half
/// way. Each migrator is looked up in its own table (`_sqlx_migrations`, or
/// another one such as `outbox._sqlx_migrations`). Migrations the database has
/// and the binary does not know are fine: a newer release ran them first.
pub async fn verify_migrations(
    conn: &mut PgConnection,
    migrators: &[&Migrator],
) -> anyhow::Result<()> {
    const HOW: &str = "start once with RUN_MIGRATIONS=true (the default), or point DATABASE_URL at a migrated database";
    for migrator in migrators {
        let table = migrator.table_name.as_ref();
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .context("Failed to look for the migrations table")?;
        let applied: HashMap<i64, Vec<u8>> = if exists {
            if let Some(version) = conn.dirty_version(table).await? {
                anyhow::bail!(
                    "RUN_MIGRATIONS=false, but migration {version} in {table} failed half way: fix the database, then {HOW}"
                );
            }
            conn.list_applied_migrations(table)
                .await?
                .into_iter()
                .map(|m| (m.version, m.checksum.into_owned()))
                .collect()
        } else {
            HashMap::new()
        };
        let needed: Vec<_> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .collect();
        let missing: Vec<_> = needed
            .iter()
            .filter(|m| !applied.contains_key(&m.version))
            .collect();
        if let Some(first) = missing.first() {
            anyhow::bail!(
                "RUN_MIGRATIONS=false, but the database lacks {} of this service's {} migrations (first: {} {}, in {table}): {HOW}",
                missing.len(),
                needed.len(),
                first.version,
                first.description,
            );
        }
        if let Some(changed) = needed.iter().find(|m| {
            applied
                .get(&m.version)
                .is_some_and(|c| c[..] != m.checksum[..])
        }) {
            anyhow::bail!(
                "RUN_MIGRATIONS=false, but migration {} {} in the database differs from this binary's: it was migrated by another version of the service",
                changed.version,
                changed.description,
            );
        }
    }
    Ok(())
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

/// Applies `migrators` in order (tests and benchmarks on a fresh database).
pub async fn migrate(pool: &PgPool, migrators: &[&Migrator]) -> anyhow::Result<()> {
    for migrator in migrators {
        migrator
            .run(pool)
            .await
            .context("Failed to apply database migrations")?;
    }
    Ok(())
}

/// The own pool of a background part (the relay, the consumer) of `size`
/// connections, when the part runs (`enabled`).
pub async fn part_pool(
    args: &DatabaseArgs,
    options: &PgConnectOptions,
    enabled: bool,
    size: u32,
) -> anyhow::Result<Option<PgPool>> {
    Ok(match enabled {
        true => Some(pool(args, options, size).await?),
        false => None,
    })
}
