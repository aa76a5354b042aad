-- Per-aggregate sequence numbers, on both sides of the queue.
--
-- Why: the relay keeps an aggregate's events in order and a FIFO queue delivers
-- them in order, but nothing *checked* it on arrival. An event that overtook an
-- earlier one of its aggregate (a per-entry send failure in a batch, a DLQ
-- redrive of one message, an operator re-sending by hand) would be applied
-- silently, out of order: a cancellation applied before the booking it cancels.
-- Now every event carries its position among its aggregate's events (1, 2, 3…,
-- the envelope's `sequence`), and a consumer applies an aggregate's events only
-- in that order; an event that is not the next one is never applied, it is
-- dead-lettered, counted and logged (see `outbox::consumer`).

-- The writer's side: the last sequence number given to each aggregate. Assigned
-- by `outbox::store::enqueue` with an upsert ... returning, in the writer's own
-- transaction, so:
-- - a rolled-back write gives its number back (no gaps: a gap would look like a
--   lost event to every consumer);
-- - writers of one aggregate serialise on this row until they commit, so the
--   sequence order of an aggregate's events is also their commit order (and
--   their `outbox.event.seq` order, which the relay sends in).
-- Not derived from `max(sequence)` of `outbox.event`: retention deletes the
-- published rows, and the numbering must continue after them. One row per
-- aggregate that ever had an event, kept for good (an aggregate whose row was
-- deleted would start again at 1, and consumers would take its next event for
-- an old copy).
create table outbox.aggregate_sequence (
    aggregate_type  text    not null,
    aggregate_id    uuid    not null,
    last            bigint  not null check (last > 0),
    -- (type, id): one id may name aggregates of two types without their
    -- numbering mixing.
    primary key (aggregate_type, aggregate_id)
);

-- The consumer's side: the last sequence number applied per aggregate, written
-- in the same transaction as the effect (as the inbox is). For an event with
-- sequence n the consumer expects last + 1 (1 when the aggregate is new to it):
-- - n = last + 1: applied, and last becomes n;
-- - n <= last: an old copy (the inbox recognises copies by event id; this also
--   catches one redriven after the inbox forgot its id): skipped, acknowledged;
-- - n > last + 1: an earlier event is missing: not applied, moved to the DLQ,
--   `consumer_failed_total{reason="out_of_sequence"}`, an ERROR naming the
--   aggregate, the expected and the received sequence. Redriving the DLQ in
--   order, once the missing event arrived, applies it.
-- Events without a sequence (written before this migration) are applied
-- unchecked and leave `last` alone. Kept for good, like the writer's side: a
-- forgotten position would make the aggregate's next event look out of sequence.
create table outbox.inbox_position (
    aggregate_type  text        not null,
    aggregate_id    uuid        not null,
    last            bigint      not null check (last >= 0),
    updated_at      timestamptz not null default now(),
    primary key (aggregate_type, aggregate_id)
);
