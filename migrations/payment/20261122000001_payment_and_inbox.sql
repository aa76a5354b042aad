-- Payment service schema: the inbox that makes consumption idempotent, and the
-- payments it records.

create table inbox (
    -- The producer's event id. A redelivered or re-sent event hits this primary
    -- key and is skipped; the insert happens in the same transaction as the payment.
    event_id        uuid        primary key,
    event_type      text        not null,
    message_id      text,
    received_at     timestamptz not null default now()
);

create table payment (
    -- UUIDv7: time-ordered, so the newest-first listing walks the primary key.
    id              uuid        primary key,
    -- One payment per booking, whatever the inbox says: the last line of defence
    -- against a second event for the same flight with a new event id.
    flight_id       uuid        not null unique,
    event_id        uuid        not null references inbox (event_id),
    amount          bigint      not null check (amount > 0),
    currency        char(3)     not null,
    outcome         text        not null check (outcome in ('APPROVED', 'DECLINED')),
    reason          text,
    booked_at       timestamptz not null,
    processed_at    timestamptz not null default now()
);
