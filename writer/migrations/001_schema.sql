-- Core tables. Applied by `telemetry-admin migrate` inside the configured schema
-- (search_path is set by the migrator); idempotent.

-- One row per channel value ("long" format). Partitioned by day on observed_at; daily
-- partitions are created ahead (and back to the retention horizon) by the writer.
CREATE TABLE IF NOT EXISTS readings (
    observed_at  timestamptz      NOT NULL,
    received_at  timestamptz      NOT NULL,
    source       text             NOT NULL,
    device       text             NOT NULL,
    channel      text             NOT NULL,
    value        double precision,
    text_value   text,
    unit         text             NOT NULL,
    quality      text             NOT NULL,
    session      text,
    producer     text             NOT NULL,
    seq          bigint           NOT NULL
) PARTITION BY RANGE (observed_at);

CREATE INDEX IF NOT EXISTS readings_observed_at_brin ON readings USING brin (observed_at);
CREATE INDEX IF NOT EXISTS readings_device_channel_time ON readings (device, channel, observed_at);

-- The idempotency ledger: one row per committed frame. The writer inserts a batch's keys
-- with ON CONFLICT DO NOTHING in the same transaction as the COPY, and copies only the
-- frames whose key was new. Partitioned like readings so retention drops both together.
CREATE TABLE IF NOT EXISTS frame_keys (
    producer     text        NOT NULL,
    seq          bigint      NOT NULL,
    observed_at  timestamptz NOT NULL,
    PRIMARY KEY (producer, seq, observed_at)
) PARTITION BY RANGE (observed_at);

-- Latest value per device and channel, upserted in the same transaction as the COPY.
CREATE TABLE IF NOT EXISTS current_state (
    source       text             NOT NULL,
    device       text             NOT NULL,
    channel      text             NOT NULL,
    observed_at  timestamptz      NOT NULL,
    value        double precision,
    text_value   text,
    unit         text             NOT NULL,
    quality      text             NOT NULL,
    session      text,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (source, device, channel)
);

-- Per-producer progress: frames committed and highest sequence seen.
-- max_seq - frames is the number of frames missing (sequence gaps), never silent.
CREATE TABLE IF NOT EXISTS producer_progress (
    producer     text        PRIMARY KEY,
    source       text        NOT NULL,
    frames       bigint      NOT NULL,
    max_seq      bigint      NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now()
);

-- Optional JSONB snapshot of a whole frame per device and session, at a configurable interval.
CREATE TABLE IF NOT EXISTS frames (
    observed_at  timestamptz NOT NULL,
    source       text        NOT NULL,
    device       text        NOT NULL,
    session      text,
    producer     text        NOT NULL,
    seq          bigint      NOT NULL,
    channels     jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS frames_device_time ON frames (device, observed_at);
