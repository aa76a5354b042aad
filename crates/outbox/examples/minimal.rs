//! A row and its event in one transaction, relayed to SQS, consumed once.
//! Needs `DATABASE_URL` and the usual AWS settings (`AWS_ENDPOINT_URL_SQS` locally).
use outbox::consumer::{Consumer, ConsumerConfig};
use outbox::sqs::{Queue, QueueRef, SqsPublisher};
use outbox::{Event, EventEnvelope as Envelope, Handled, Handler, HandlerError as Error};
use outbox::{NewEvent, Poison, Relay, RelayConfig};
use sqlx::{PgConnection as Tx, PgPool, query};

#[derive(serde::Serialize, serde::Deserialize)]
struct Greeted(String);
impl Event for Greeted {
    const TYPE: &'static str = "Greeted";
    const VERSION: i32 = 1;
    const AGGREGATE_TYPE: &'static str = "greeting";
}
struct CountGreetings;
impl Handler for CountGreetings {
    type Event = Greeted;
    fn decode(&self, envelope: &Envelope) -> Result<Greeted, Poison> {
        Ok(envelope.decode()?)
    }
    async fn apply(&self, tx: &mut Tx, _: &Envelope, g: &Greeted) -> Result<Handled, Error> {
        let sql = "update greeting set seen = seen + 1 where name = $1";
        query(sql).bind(&g.0).execute(tx).await?;
        Ok(Handled::Processed)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = PgPool::connect(&std::env::var("DATABASE_URL")?).await?;
    outbox::schema::migrator().run(&pool).await?;
    let ddl = "create table if not exists greeting (name text primary key, seen int default 0)";
    query(ddl).execute(&pool).await?;

    // 1. The change and its event commit together, or neither does.
    let id = uuid::Uuid::now_v7();
    let name = format!("world {id}");
    let mut tx = pool.begin().await?;
    let insert = query("insert into greeting (name) values ($1)");
    insert.bind(&name).execute(&mut *tx).await?;
    let event = NewEvent::of(id, &Greeted(name.clone()), None)?;
    outbox::store::enqueue(&mut tx, event).await?;
    tx.commit().await?;
    // 2. The relay publishes what committed; 3. the consumer applies it once.
    let client = outbox::sqs::client().await;
    let url = outbox::sqs::create_queue(&client, "outbox-example.fifo").await?;
    let queue = Queue::new(client, QueueRef::Url(url))?;
    let publisher = SqsPublisher::new(queue.clone());
    let relay = Relay::new(pool.clone(), publisher, RelayConfig::default());
    relay.run_once().await?;
    let config = ConsumerConfig::default();
    let consumer = Consumer::new(pool.clone(), queue, CountGreetings, config);
    consumer.run_once().await?;
    let sql = "select seen from greeting where name = $1";
    let seen: i32 = sqlx::query_scalar(sql).bind(&name).fetch_one(&pool).await?;
    println!("{name}: published and consumed {seen} time(s)");
    Ok(())
}
