-- Payments get a lifecycle and announce it. A payment is APPROVED or DECLINED
-- when its FlightBooked arrives, and an approved one becomes REFUNDED when its
-- booking's FlightCancelled arrives. Each change writes its event
-- (PaymentApproved, PaymentDeclined, PaymentRefunded) to payment-service's own
-- outbox in the same transaction as the change and its inbox entry; the relay
-- publishes them to payment-events.fifo, where booking-service applies them.
-- `outcome` stays what was decided; `status` is where the payment stands now.

alter table payment
    add column status      text,
    add column refunded_at timestamptz;
update payment set status = outcome;
alter table payment
    alter column status set not null,
    add constraint payment_status check (status in ('APPROVED', 'DECLINED', 'REFUNDED')),
    -- Only an approved payment is ever refunded, and a refund has its time.
    add constraint payment_refund check (
        (status = 'REFUNDED') = (refunded_at is not null)
        and (status <> 'REFUNDED' or outcome = 'APPROVED'));

-- Payments recorded before this release were never announced, and booking-service
-- keeps their bookings PENDING_PAYMENT until they are (its migration of this
-- release): each gets its PaymentApproved or PaymentDeclined now, sequence 1 of
-- its payment, written the way `outbox::store::enqueue` writes an event (the
-- envelope of contracts' PaymentApprovedV1 / PaymentDeclinedV1, v1 is frozen).
-- The outbox's insert trigger gives them their lanes; the relay sends them at start.
insert into outbox.aggregate_sequence (aggregate_type, aggregate_id, last)
select 'payment', id, 1 from payment;

insert into outbox.event (event_id, aggregate_type, aggregate_id, event_type, event_version, envelope)
select e.event_id, 'payment', p.id, e.event_type, 1,
       jsonb_build_object(
           'eventId', e.event_id,
           'eventType', e.event_type,
           'eventVersion', 1,
           'aggregateType', 'payment',
           'aggregateId', p.id,
           'sequence', 1,
           'occurredAt', now(),
           'payload', case p.outcome
               when 'APPROVED' then jsonb_build_object(
                   'paymentId', p.id, 'flightId', p.flight_id,
                   'amount', jsonb_build_object('amount', p.amount, 'currency', p.currency),
                   'approvedAt', p.processed_at)
               else jsonb_build_object(
                   'paymentId', p.id, 'flightId', p.flight_id,
                   'amount', jsonb_build_object('amount', p.amount, 'currency', p.currency),
                   'reason', coalesce(p.reason, 'declined'),
                   'declinedAt', p.processed_at)
           end)
from payment p
cross join lateral (
    select gen_random_uuid() as event_id,
           case p.outcome when 'APPROVED' then 'PaymentApproved' else 'PaymentDeclined' end as event_type
) e
order by p.id;
