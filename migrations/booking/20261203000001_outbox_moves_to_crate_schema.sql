-- The outbox now belongs to the outbox crate: its tables live in the schema
-- `outbox`, created by the crate's migrator, which booking-service runs before
-- these migrations. The earlier migrations still create `public.outbox` and
-- `public.outbox_lane` (a migration that ran must never change); this one carries
-- what they hold over and drops them. On a new database they are empty.

-- Unpublished events keep their seq (the order), attempts and parked state; the
-- crate's insert trigger builds their lanes. Published ones are history the
-- retention would delete anyway.
insert into outbox.event (seq, event_id, aggregate_type, aggregate_id, event_type, event_version,
                          envelope, traceparent, created_at, attempts, last_error, next_attempt_at,
                          parked_at, published_at)
overriding system value
select seq, event_id, aggregate_type, aggregate_id, event_type, event_version,
       envelope, traceparent, created_at, attempts, last_error, next_attempt_at,
       parked_at, published_at
from public.outbox
where published_at is null
order by seq;

-- Backoffs and parked lanes as they were; claims are dropped (the relays that
-- held them are gone with the old version).
update outbox.lane l
set next_attempt_at = o.next_attempt_at, outage = o.outage, parked_at = o.parked_at
from public.outbox_lane o
where o.aggregate_id = l.aggregate_id;

-- New events continue after the old ones.
select setval(pg_get_serial_sequence('outbox.event', 'seq'),
              greatest((select max(seq) from public.outbox), (select max(seq) from outbox.event), 0) + 1,
              false);

drop table public.outbox_lane;
drop table public.outbox;
drop function public.outbox_after_insert();
