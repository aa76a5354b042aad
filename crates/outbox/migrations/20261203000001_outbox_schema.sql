-- The outbox crate's schema: the outbox a service writes its events to, the
-- lanes the relays claim, and the inbox a consumer records delivered events in.
--
-- Everything lives in the schema `outbox` (created by the migrator, which keeps
-- its own history in `outbox._sqlx_migrations`), so it never collides with the
-- service's tables or the service's migration history. The names are fixed, not
-- configurable: every query of the crate is checked against them at compile time.

-- The outbox. A gap-free order is not needed, only a total one: the relay sends
-- the events of one aggregate in `seq` order. Writers of one aggregate serialise
-- on its business row (its insert, later `select ... for update`), so for any one
-- aggregate `seq` order is also commit order.
create table outbox.event (
    seq                 bigint generated always as identity primary key,
    event_id            uuid        not null unique,
    aggregate_type      text        not null,
    aggregate_id        uuid        not null,
    event_type          text        not null,
    event_version       integer     not null,
    -- The complete envelope as it goes on the wire: the relay sends it verbatim,
    -- so what was committed is exactly what consumers receive.
    envelope            jsonb       not null,
    -- W3C trace context of the request that wrote the event, so the consumer's
    -- trace continues it.
    traceparent         text,
    created_at          timestamptz not null default now(),
    -- Delivery state, owned by the relay.
    attempts            integer     not null default 0,
    last_error          text,
    next_attempt_at     timestamptz not null default now(),
    -- Set when the relay gave up after its maximum attempts; an operator puts the
    -- event back in line (`outbox::admin::retry`).
    parked_at           timestamptz,
    -- The last operator retry: retries of one event are at most one a second,
    -- so a stuck client (or a page firing it) cannot turn it into a send loop.
    retried_at          timestamptz,
    published_at        timestamptz
)
-- Room on every page for the relay's updates (they change no indexed column
-- except `published_at`), so most are HOT updates that write no index entries.
with (fillfactor = 70);

-- A lane's first unpublished events, read by every claim.
create index event_unpublished_by_aggregate on outbox.event (aggregate_id, seq) where published_at is null;
-- The whole backlog in order, for the operator's listing and the oldest pending
-- event. The predicate `attempts >= 0` (true of every row) is one the claim does
-- not state, so the planner can never read a lane through this index, whatever
-- its statistics say: with statistics taken while the backlog was empty it once
-- did, at 0.7 s per claim for 17,000 pending events (measured).
create index event_backlog_by_seq on outbox.event (seq) where published_at is null and attempts >= 0;
-- Retention deletes published rows oldest first, in small batches.
create index event_published on outbox.event (published_at) where published_at is not null;

-- Lanes: one row per aggregate that has unpublished events. The relay claims
-- lanes, not rows, so the head of every aggregate is one index entry away:
-- - a claim walks `lane_by_head` oldest lane first and stops after `limit`
--   eligible lanes: O(lanes returned + lanes skipped), whatever the backlog;
-- - it then reads each claimed lane's first events through
--   `event_unpublished_by_aggregate`: O(rows returned);
-- - a claimed lane belongs to one relay until it records the result or the
--   lease runs out, so two batches of one aggregate are never in flight at once.
-- Every plan here is an index scan with an equality or an ORDER BY ... LIMIT on
-- the index's leading column, so none depends on fresh statistics.
create table outbox.lane (
    aggregate_id    uuid primary key,
    -- Sort key (about the seq of the lane's first unpublished event): lanes are
    -- served oldest first. Only fairness depends on it, never order.
    head_seq        bigint      not null,
    -- Unpublished events of this aggregate. Writers add under the lane's row lock
    -- (the trigger below); the relay subtracts exactly the rows it flipped to
    -- published and deletes the lane only when this reaches 0. A writer that
    -- commits concurrently has either raised it first (the delete re-checks the
    -- row it waited for and keeps the lane) or finds no lane and creates one, so
    -- no event is ever left without a lane.
    pending         bigint      not null,
    -- Backoff of the lane's head after a failed send.
    next_attempt_at timestamptz not null default now(),
    -- The last failure was an outage (the whole call failed), not the event's
    -- fault: when the broker answers again every such lane is due at once.
    outage          boolean     not null default false,
    claimed_by      uuid,
    claimed_until   timestamptz,
    -- The head event used up its attempts: the aggregate waits for an operator.
    parked_at       timestamptz
)
-- Claims and results update every lane row at least twice: room for HOT updates.
with (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);

-- The claim: oldest lane first; parked lanes are not candidates at all.
create index lane_by_head on outbox.lane (head_seq) where parked_at is null;
-- Lease renewal and the release at shutdown look up a relay's own lanes.
create index lane_by_owner on outbox.lane (claimed_by) where claimed_by is not null;

-- One trigger per INSERT statement: maintain the lanes of the aggregates it
-- wrote (many events of one aggregate touch its lane once), then wake the relays.
-- Lanes are locked in aggregate order, so writers of several aggregates cannot
-- deadlock on them. The lane's row lock is held until the writer commits: the
-- relay's `pending` update of that lane waits for it instead of missing the event.
create function outbox.after_insert() returns trigger language plpgsql as $$
begin
    insert into outbox.lane as l (aggregate_id, head_seq, pending)
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

create trigger after_insert after insert on outbox.event
    referencing new table as inserted
    for each statement execute function outbox.after_insert();

-- The inbox: ids of the events a consumer has applied, inserted in the same
-- transaction as their effect. A redelivered or re-sent event hits the primary
-- key and is skipped.
create table outbox.inbox (
    event_id        uuid        primary key,
    event_type      text        not null,
    message_id      text,
    received_at     timestamptz not null default now()
);

-- Retention forgets entries oldest first, once no copy of the event can still
-- arrive (see `outbox::inbox::purge`).
create index inbox_received on outbox.inbox (received_at);
