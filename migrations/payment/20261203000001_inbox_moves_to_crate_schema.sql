-- The inbox now belongs to the outbox crate (`outbox.inbox`, created by the
-- crate's migrator, which payment-service runs before these migrations). The
-- first migration still creates `public.inbox` (a migration that ran must never
-- change); this one carries its entries over and drops it.
--
-- The payment no longer references its inbox entry: the inbox is purged after
-- its retention, the payment is kept. One payment per booking stays guaranteed
-- by `payment.flight_id unique`.
alter table payment drop constraint payment_event_id_fkey;

insert into outbox.inbox (event_id, event_type, message_id, received_at)
select event_id, event_type, message_id, received_at from public.inbox;

drop table public.inbox;
