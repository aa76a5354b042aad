//! The crate's tables, created by its own migrations (`migrations/` in this
//! crate, embedded at compile time).
//!
//! Everything lives in the PostgreSQL schema `outbox` (`outbox.event`,
//! `outbox.lane`, `outbox.aggregate_sequence` on the writer's side;
//! `outbox.inbox`, `outbox.inbox_position` on the consumer's), and the migrator keeps its history in
//! `outbox._sqlx_migrations`. So the crate's tables never collide with the
//! service's, and the service's own `sqlx` migrator (default table
//! `_sqlx_migrations`) and this one never see each other's history. The names
//! are fixed rather than configurable because every query of the crate is
//! checked against them at compile time; one database holds one outbox.

use sqlx::migrate::Migrator;

/// The schema the crate's tables live in.
pub const SCHEMA: &str = "outbox";

/// The crate's migrator. Run it at start-up, before the service's own
/// migrations (which may then refer to the crate's tables):
///
/// ```no_run
/// # async fn start(pool: sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
/// outbox::schema::migrator().run(&pool).await?;
/// # Ok(()) }
/// ```
///
/// The role needs the `CREATE` privilege on the database (for the schema);
/// concurrent replicas are serialised by the migrator's advisory lock.
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("outbox._sqlx_migrations");
    migrator.create_schema(SCHEMA);
    migrator
}
