-- Outbox lanes: one row per aggregate that has unpublished events. The relay
-- claims *lanes*, not rows.
--
-- Why: the old claim asked, for every candidate row, "is there an earlier unsent
-- event of this aggregate?". With few aggregates and a deep backlog (one hot
-- booking, or every booking during an SQS outage) it walked the whole pending
-- backlog to find a handful of heads, and with stale statistics the planner
-- turned that check into O(claim x backlog). A lane makes the head of every
-- aggregate one index entry away:
-- - a claim walks `outbox_lane_by_head` oldest lane first and stops after
--   `limit` eligible lanes: cost O(lanes returned + lanes skipped because they
--   are in flight or backing off), whatever the number of pending rows;
-- - then it reads the first few unpublished rows of each claimed lane through
--   `outbox_unpublished_by_aggregate`: O(rows returned);
-- - a claimed lane belongs to one relay until it records the result or the lease
--   runs out, so two batches of one aggregate are never in flight at once and a
--   run of consecutive events of one aggregate can travel in one SendMessageBatch.
-- Every plan here is an index scan with an equality or an ORDER BY ... LIMIT on
-- the index's leading column, so none of them depends on fresh statistics.
create table outbox_lane (
    aggregate_id    uuid primary key,
    -- Sort key of the lane (about the seq of its first unpublished event): lanes
    -- are served oldest first. The relay advances it when it publishes; order
    -- correctness never depends on it, only fairness.
    head_seq        bigint      not null,
    -- Unpublished events of this aggregate. Writers add under the lane's row lock
    -- (the insert trigger below); the relay subtracts exactly the rows it flipped
    -- to published, and deletes the lane only when this reaches 0. A writer that
    -- commits concurrently has either raised it first (the delete re-checks the
    -- row it waited for and keeps the lane) or finds no lane and creates one, so
    -- no event is ever left without a lane.
    pending         bigint      not null,
    -- Backoff of the lane's head after a failed send.
    next_attempt_at timestamptz not null default now(),
    -- The last failure was an outage (the whole call failed), not the event's
    -- fault: when SQS answers again every such lane is made due at once.
    outage          boolean     not null default false,
    claimed_by      uuid,
    claimed_until   timestamptz,
    -- The head event used up its attempts: the aggregate waits for an operator.
    parked_at       timestamptz
)
-- The claim and the recorder update every lane row at least twice: room for HOT updates.
with (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);

-- The claim: oldest lane first; parked lanes are not candidates at all.
create index outbox_lane_by_head on outbox_lane (head_seq) where parked_at is null;
-- The lease renewal and the release at shutdown look up a relay's own lanes.
create index outbox_lane_by_owner on outbox_lane (claimed_by) where claimed_by is not null;

-- Existing unpublished events (deployed databases) get their lanes.
insert into outbox_lane (aggregate_id, head_seq, pending, parked_at)
select aggregate_id, min(seq), count(*), max(parked_at)
from outbox
where published_at is null
group by aggregate_id;

-- Claims live on lanes now.
alter table outbox drop column claimed_by, drop column claimed_until;

-- The claim reads a lane's first events with `aggregate_id = $1 and published_at
-- is null order by seq`. With statistics taken while the backlog was empty, the
-- planner believed almost nothing was unpublished and read them through the
-- seq-ordered partial index instead, filtering every pending row of every other
-- aggregate: 0.7 s per claim at 17,000 pending events (measured). So the
-- seq-ordered index gets a predicate the claim does not state (`attempts >= 0`,
-- true of every row): the planner cannot use it there, whatever the statistics,
-- and the queries that want it (the operator's listing, the oldest pending
-- event) state it.
drop index outbox_unpublished;
create index outbox_backlog_by_seq on outbox (seq) where published_at is null and attempts >= 0;

-- One trigger per INSERT statement: maintain the lanes of the aggregates it wrote
-- (a statement inserting many events of one aggregate touches its lane once),
-- then wake the relays. Lanes are locked in aggregate order, so two writers
-- inserting events of several aggregates cannot deadlock on them. The lane row
-- lock is held until the writer commits: the relay's `pending` update of that
-- lane waits for it instead of missing the new event.
create function outbox_after_insert() returns trigger language plpgsql as $$
begin
    insert into outbox_lane as l (aggregate_id, head_seq, pending)
    select aggregate_id, min(seq), count(*)
    from inserted
    group by aggregate_id
    order by aggregate_id
    on conflict (aggregate_id) do update set pending = l.pending + excluded.pending;
    -- NOTIFY is transactional: a rolled-back insert wakes nobody, and Postgres
    -- folds identical notifications of one transaction into one.
    perform pg_notify('outbox_events', '');
    return null;
end;
$$;

drop trigger outbox_notify on outbox;
drop function outbox_notify();
create trigger outbox_after_insert after insert on outbox
    referencing new table as inserted
    for each statement execute function outbox_after_insert();
