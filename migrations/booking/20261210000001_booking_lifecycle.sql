-- The booking lifecycle. A booking is PENDING_PAYMENT when it is made, CONFIRMED
-- when payment-service approves its payment or REJECTED when it declines it, and
-- CANCELLED when the customer cancels it (from PENDING_PAYMENT or CONFIRMED).
-- booking-service learns the payment from payment-service's events
-- (PaymentApproved, PaymentDeclined, PaymentRefunded on payment-events.fifo),
-- applied by its consumer in the same transaction as their inbox entry.

-- Bookings made before this version are `BOOKED`: their payment was decided, but
-- nobody told the booking. They wait for it like a new booking does:
-- payment-service's migration of the same release announces the outcome of every
-- payment it recorded before (it writes their PaymentApproved / PaymentDeclined
-- to its outbox), so each becomes CONFIRMED or REJECTED once its relay runs.
update flight set status = 'PENDING_PAYMENT' where status = 'BOOKED';

alter table flight
    alter column status set default 'PENDING_PAYMENT',
    add constraint flight_status
        check (status in ('PENDING_PAYMENT', 'CONFIRMED', 'REJECTED', 'CANCELLED')),
    -- When the status last changed (the booking's own time until then).
    add column status_changed_at timestamptz,
    add column cancelled_at      timestamptz,
    -- The payment as payment-service announced it; null until its first event.
    add column payment_id           uuid,
    add column payment_status       text
        check (payment_status in ('APPROVED', 'DECLINED', 'REFUNDED')),
    add column payment_reason       text,
    -- payment-service's clock: when it approved or declined, when it refunded.
    add column payment_decided_at   timestamptz,
    add column payment_refunded_at  timestamptz;

update flight set status_changed_at = created_at;
alter table flight
    alter column status_changed_at set default now(),
    alter column status_changed_at set not null;
