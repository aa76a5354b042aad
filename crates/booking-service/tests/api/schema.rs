//! Upgrading a database from before the outbox crate owned its schema: what the
//! old `public.outbox` held is carried into `outbox.event` and still relayed.

use std::path::Path;

use booking_service::startup::migrators;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

#[tokio::test]
async fn an_old_outbox_is_carried_into_the_crate_schema() {
    let url = service_kit::testing::new_database_url("upgrade");
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    service_kit::db::ensure_database(&options).await.unwrap();
    let pool = PgPoolOptions::new().connect_with(options).await.unwrap();

    // The database as the previous release left it: only the first two migrations.
    let old = tempfile_dir();
    for name in [
        "20261122000001_flight_and_outbox.sql",
        "20261202000001_outbox_lanes.sql",
    ] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations/booking")
            .join(name);
        std::fs::copy(from, old.join(name)).unwrap();
    }
    Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let (parked, waiting) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "insert into outbox (event_id, aggregate_type, aggregate_id, event_type, event_version, envelope, published_at)
         values (gen_random_uuid(), 'flight', '{waiting}', 'Old', 1, '{{}}', now()),
                (gen_random_uuid(), 'flight', '{waiting}', 'A', 1, '{{}}', null),
                (gen_random_uuid(), 'flight', '{waiting}', 'B', 1, '{{}}', null),
                (gen_random_uuid(), 'flight', '{parked}', 'C', 1, '{{}}', null);
         update outbox set parked_at = now(), attempts = 12 where aggregate_id = '{parked}';
         update outbox_lane set parked_at = now() where aggregate_id = '{parked}';"
    )))
    .execute(&pool)
    .await
    .unwrap();

    service_kit::db::migrate(&pool, &migrators()).await.unwrap();

    let events: Vec<(i64, String, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as("select seq, event_type, parked_at from outbox.event order by seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let kept: Vec<_> = events
        .iter()
        .map(|(seq, t, _)| (*seq, t.as_str()))
        .collect();
    assert_eq!(
        kept,
        [(2, "A"), (3, "B"), (4, "C")],
        "unpublished events keep their order"
    );
    assert!(events[2].2.is_some(), "the parked event stays parked");
    let lanes: Vec<(Uuid, i64, bool)> = sqlx::query_as(
        "select aggregate_id, pending, parked_at is not null from outbox.lane order by head_seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(lanes, [(waiting, 2, false), (parked, 1, true)]);
    let old_tables: i64 = sqlx::query_scalar(
        "select count(*) from pg_tables where schemaname = 'public' and tablename in ('outbox', 'outbox_lane')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(old_tables, 0);
    // New events continue after the carried ones.
    let next: i64 = sqlx::query_scalar(
        "insert into outbox.event (event_id, aggregate_type, aggregate_id, event_type, event_version, envelope)
         values (gen_random_uuid(), 'flight', gen_random_uuid(), 'New', 1, '{}') returning seq",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(next > 4, "{next}");
    pool.close().await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("old-migrations-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn bookings_made_before_the_lifecycle_wait_for_their_payment() {
    let url = service_kit::testing::new_database_url("upgrade");
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    service_kit::db::ensure_database(&options).await.unwrap();
    let pool = PgPoolOptions::new().connect_with(options).await.unwrap();
    // The previous release: the crate's first migration, and booking's first three.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    service_kit::testing::migrate_partly(
        &pool,
        &root.join("crates/outbox/migrations"),
        &["20261203000001_outbox_schema.sql"],
        true,
    )
    .await
    .unwrap();
    service_kit::testing::migrate_partly(
        &pool,
        &root.join("migrations/booking"),
        &[
            "20261122000001_flight_and_outbox.sql",
            "20261202000001_outbox_lanes.sql",
            "20261203000001_outbox_moves_to_crate_schema.sql",
        ],
        false,
    )
    .await
    .unwrap();
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into flight (id, departure_airport, arrival_airport, departure_at, arrival_at, fare_amount, fare_currency, created_at)
         values ($1, 'Paris', 'London', now(), now() + interval '1 hour', 9900, 'EUR', now() - interval '1 day')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let old_status: String = sqlx::query_scalar("select status from flight")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(old_status, "BOOKED");

    service_kit::db::migrate(&pool, &migrators()).await.unwrap();

    let (status, changed_at, created_at): (
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as("select status, status_changed_at, created_at from flight where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "PENDING_PAYMENT");
    assert_eq!(changed_at, created_at);
    pool.close().await;
}
