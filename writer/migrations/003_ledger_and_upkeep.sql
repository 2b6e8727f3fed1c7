-- Issue 11 (storage): an idempotency ledger unique on (producer, seq); partition upkeep in
-- small, clamped steps that never block commits; what retention needs to resist clock jumps.
-- Upgrades a database at 002 in place (the old ledger's keys are kept).
--
-- The ledger. 001 partitioned frame_keys by observed_at with PRIMARY KEY (producer, seq,
-- observed_at): a unique index of a partitioned table must contain the partition key, so
-- the same (producer, seq) with another observed_at was a new key and was stored twice.
-- Design: frame_keys is now one plain table with PRIMARY KEY (producer, seq), so uniqueness
-- holds whatever the timestamps. Two columns keep it useful:
--   day    the UTC day of observed_at, i.e. the readings partition the frame went to.
--          Retention deletes the ledger rows of the days it drops, in bounded chunks
--          (prune_frame_keys), instead of dropping ledger partitions: more work than a DROP,
--          but bounded per transaction, and it keeps uniqueness in a single index.
--   digest 64 bits of a hash of the frame's content (writer/pg_copy.py frame_digest). A key
--          seen again with the same digest is a duplicate (skipped); with another digest it
--          is key reuse (dead-lettered, never stored). NULL for keys copied from the old
--          ledger: a conflict with them counts as a duplicate, as before.
CREATE TABLE frame_keys_v3 (
    producer  text   NOT NULL,
    seq       bigint NOT NULL,
    day       date   NOT NULL,
    digest    bigint,
    CONSTRAINT frame_keys_v3_pkey PRIMARY KEY (producer, seq)
);
INSERT INTO frame_keys_v3 (producer, seq, day)
SELECT DISTINCT ON (producer, seq) producer, seq, (observed_at AT TIME ZONE 'UTC')::date
  FROM frame_keys
 ORDER BY producer, seq, observed_at;
DROP TABLE frame_keys;  -- with its daily partitions
ALTER TABLE frame_keys_v3 RENAME TO frame_keys;
ALTER INDEX frame_keys_v3_pkey RENAME TO frame_keys_pkey;
CREATE INDEX frame_keys_day ON frame_keys (day);
GRANT SELECT, INSERT ON frame_keys TO telemetry_writer;

-- What the writer's retention pass needs across restarts (writer/retention.py): the writer's
-- clock at its last accepted pass, and its last refusal. A pass refuses to drop anything
-- when the clock moved more than a day since last_pass_at; `telemetry-admin retention
-- accept-clock` clears last_pass_at once an operator has checked the clock.
CREATE TABLE IF NOT EXISTS retention_state (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_pass_at  timestamptz,
    refused_at    timestamptz,
    refusal       text
);
INSERT INTO retention_state DEFAULT VALUES ON CONFLICT DO NOTHING;
GRANT SELECT, UPDATE ON retention_state TO telemetry_writer;

-- Daily partitions of readings only (the ledger is no longer partitioned). A partition is
-- created as a plain table and then ATTACHed: ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on
-- readings, which neither waits for a long dashboard query nor blocks inserts (CREATE TABLE
-- ... PARTITION OF takes ACCESS EXCLUSIVE). The CHECK constraint spares ATTACH a scan. An
-- advisory lock per schema serialises replicas doing the same work; it is waited for without
-- the caller's lock_timeout (the holder's work is bounded: a few days, each lock-timed).
CREATE OR REPLACE FUNCTION ensure_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    d date := first_day;
    part text;
    lo text;
    hi text;
    n integer := 0;
    caller_lock_timeout text := current_setting('lock_timeout');
BEGIN
    IF last_day - first_day > 3660 THEN
        RAISE EXCEPTION 'ensure_partitions: at most 3660 days per call';
    END IF;
    PERFORM set_config('lock_timeout', '0', true);
    PERFORM pg_advisory_xact_lock(2115895298, hashtext(current_schema()));  -- 0x7E1E0002, this schema
    PERFORM set_config('lock_timeout', caller_lock_timeout, true);
    WHILE d <= last_day LOOP
        part := 'readings_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(quote_ident(part)) IS NULL THEN
            lo := to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00';
            hi := to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
            EXECUTE format('CREATE TABLE %I (LIKE readings INCLUDING DEFAULTS)', part);
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (observed_at >= %L AND observed_at < %L)',
                           part, part || '_range', lo, hi);
            EXECUTE format('ALTER TABLE readings ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
            n := n + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN n;
END $$;

-- Drop at most max_days of the oldest readings partitions before cutoff. The cutoff is clamped
-- to retention_policy.min_retention_days (a warning, not an error: a floor above the writer's
-- RETENTION_DAYS once stopped ingest). Returns the names dropped.
CREATE OR REPLACE FUNCTION drop_expired_partitions(cutoff date, max_days integer) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    floor_cutoff date;
    part text;
    dropped text[] := '{}';
BEGIN
    SELECT (now() AT TIME ZONE 'UTC')::date - coalesce(min_retention_days, 1) INTO floor_cutoff FROM retention_policy;
    IF cutoff > floor_cutoff THEN
        RAISE WARNING 'drop_expired_partitions(%): retention_policy keeps at least until %', cutoff, floor_cutoff;
        cutoff := floor_cutoff;
    END IF;
    FOR part IN
        SELECT c.relname FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname = 'readings'
           AND p.relnamespace = current_schema()::regnamespace
           AND c.relname ~ '_p[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') < cutoff
         ORDER BY 1
         LIMIT greatest(max_days, 0)
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', part);
        dropped := dropped || part;
    END LOOP;
    RETURN dropped;
END $$;

-- Delete at most max_rows ledger rows of days before cutoff (clamped like the drops).
CREATE OR REPLACE FUNCTION prune_frame_keys(cutoff date, max_rows integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    floor_cutoff date;
    n bigint;
BEGIN
    SELECT (now() AT TIME ZONE 'UTC')::date - coalesce(min_retention_days, 1) INTO floor_cutoff FROM retention_policy;
    cutoff := least(cutoff, floor_cutoff);
    DELETE FROM frame_keys WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM frame_keys WHERE day < cutoff LIMIT greatest(max_rows, 0)));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- The admin-only drop of 002 (no longer used by the writer): readings partitions and the
-- ledger rows of their days, still refusing a cutoff above the floor.
CREATE OR REPLACE FUNCTION drop_partitions_before(cutoff date) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    floor_days integer;
    dropped text[];
BEGIN
    SELECT min_retention_days INTO floor_days FROM retention_policy;
    IF cutoff > (now() AT TIME ZONE 'UTC')::date - coalesce(floor_days, 1) THEN
        RAISE EXCEPTION 'drop_partitions_before(%): retention_policy keeps at least % days', cutoff, floor_days
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    dropped := drop_expired_partitions(cutoff, 2147483647);
    DELETE FROM frame_keys WHERE day < cutoff;
    RETURN dropped;
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION ensure_partitions(date, date) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION drop_partitions_before(date) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION drop_expired_partitions(date, integer) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION prune_frame_keys(date, integer) SET search_path = %I, pg_temp', current_schema());
END $$;

REVOKE ALL ON FUNCTION drop_expired_partitions(date, integer), prune_frame_keys(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION drop_expired_partitions(date, integer), prune_frame_keys(date, integer) TO telemetry_writer;
