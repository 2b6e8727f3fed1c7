-- Issue 17: runs and sessions. A run names a span of some devices' readings: it covers the
-- readings of `devices` with started_at <= observed_at < ended_at (an open run: up to now),
-- read through the `readings` view; nothing in readings is rewritten to attribute them.
--
-- name is unique; `telemetry-admin run start --name stock` gives "stock", then "stock 2",
-- "stock 3" (runs/store.py, under an advisory lock). origin: manual | detector | import.
-- The run detector (telemetry-runs) keeps its state here, in the same transaction as the
-- stream position it has processed (run_detector_position), so a restart neither loses nor
-- repeats a boundary; start_key/end_key (rule:device:entry id) make a boundary idempotent too.
CREATE TABLE IF NOT EXISTS runs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text        NOT NULL DEFAULT 'run' CHECK (kind ~ '^[a-z][a-z0-9_-]{0,31}$'),
    name        text        NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    devices     text[]      NOT NULL CHECK (cardinality(devices) BETWEEN 1 AND 64),
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    origin      text        NOT NULL DEFAULT 'manual' CHECK (origin IN ('manual', 'detector', 'import')),
    metadata    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    summary     jsonb,
    start_key   text        UNIQUE,
    end_key     text        UNIQUE,
    end_entry   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_at IS NULL OR ended_at >= started_at),
    CHECK ((status = 'open') = (ended_at IS NULL))
);
CREATE INDEX IF NOT EXISTS runs_started_at ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_unsummarised ON runs (id) WHERE status = 'closed' AND summary IS NULL;

-- An annotated instant inside a run.
CREATE TABLE IF NOT EXISTS run_marks (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint      NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    label       text        NOT NULL CHECK (length(label) BETWEEN 1 AND 1000),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS run_marks_run ON run_marks (run_id, at);

-- The detector's state machine per (rule, device): idle / starting / running / stopping,
-- since when the current condition holds, the open run, the last frame time seen.
CREATE TABLE IF NOT EXISTS run_detector_state (
    rule        text        NOT NULL,
    device      text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('idle', 'starting', 'running', 'stopping')),
    since       timestamptz,
    since_entry text,
    run_id      bigint      REFERENCES runs (id) ON DELETE SET NULL,
    last_at     timestamptz,
    since_value double precision,  -- the candidate's first value (rules with stable_within)
    PRIMARY KEY (rule, device)
);

-- The last stream entry the detector has applied, per priority stream (ms, seq of its ID).
CREATE TABLE IF NOT EXISTS run_detector_position (
    stream      text   PRIMARY KEY,
    last_ms     bigint NOT NULL,
    last_seq    bigint NOT NULL
);

-- Rights of the runs roles (telemetry_runs, telemetry_run_detector): writer/migrations/roles/,
-- applied by every `telemetry-admin migrate` when the role exists (admin/migrate.py).
