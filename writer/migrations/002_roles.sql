-- Least privilege (issue 5). Applied by the migration owner (the role that owns the tables).
--
-- telemetry_writer (a group role: log in as it, or as a member of it) gets only the DML the
-- writer needs on its own tables: COPY/INSERT into readings and frames, INSERT ... ON CONFLICT
-- ... RETURNING on frame_keys (SELECT for the RETURNING), upserts on current_state and
-- producer_progress (SELECT for the ON CONFLICT ... WHERE). No DELETE, TRUNCATE, DDL, or
-- access to schema_migrations.
--
-- Daily partitions: attaching or dropping a partition needs ownership of the parent table, so
-- the writer calls two SECURITY DEFINER functions owned by the migration owner. They do only
-- that: create daily partitions of readings/frame_keys (at most 3660 days a call) and drop
-- daily partitions older than a cutoff, never newer than retention_policy.min_retention_days
-- (raise it in production so a stolen writer credential cannot drop recent data).
-- The role is created (NOLOGIN) when missing and the migrator may create roles; in production
-- deploy/postgres creates it first.

CREATE TABLE IF NOT EXISTS retention_policy (
    only_row            boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    min_retention_days  integer NOT NULL DEFAULT 1 CHECK (min_retention_days >= 1)
);
INSERT INTO retention_policy DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION ensure_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    d date := first_day;
    t text;
    part text;
    n integer := 0;
BEGIN
    IF last_day - first_day > 3660 THEN
        RAISE EXCEPTION 'ensure_partitions: at most 3660 days per call';
    END IF;
    WHILE d <= last_day LOOP
        FOREACH t IN ARRAY ARRAY['readings', 'frame_keys'] LOOP
            part := t || '_p' || to_char(d, 'YYYYMMDD');
            IF to_regclass(quote_ident(part)) IS NULL THEN
                EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, t, to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',
                               to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
                n := n + 1;
            END IF;
        END LOOP;
        d := d + 1;
    END LOOP;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION drop_partitions_before(cutoff date) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    floor_days integer;
    part text;
    dropped text[] := '{}';
BEGIN
    SELECT min_retention_days INTO floor_days FROM retention_policy;
    IF cutoff > (now() AT TIME ZONE 'UTC')::date - coalesce(floor_days, 1) THEN
        RAISE EXCEPTION 'drop_partitions_before(%): retention_policy keeps at least % days', cutoff, floor_days
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR part IN
        SELECT c.relname FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname IN ('readings', 'frame_keys')
           AND p.relnamespace = current_schema()::regnamespace
           AND c.relname ~ '_p[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') < cutoff
         ORDER BY 1
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', part);
        dropped := dropped || part;
    END LOOP;
    RETURN dropped;
END $$;

DO $$
BEGIN
    -- Pin the search path of the SECURITY DEFINER functions to this schema, pg_temp last.
    EXECUTE format('ALTER FUNCTION ensure_partitions(date, date) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION drop_partitions_before(date) SET search_path = %I, pg_temp', current_schema());
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_writer') THEN
        BEGIN
            CREATE ROLE telemetry_writer NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another migration
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO telemetry_writer', current_schema());
END $$;

REVOKE ALL ON FUNCTION ensure_partitions(date, date), drop_partitions_before(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_partitions(date, date), drop_partitions_before(date) TO telemetry_writer;
GRANT INSERT ON readings, frames TO telemetry_writer;
GRANT SELECT, INSERT ON frame_keys TO telemetry_writer;
GRANT SELECT, INSERT, UPDATE ON current_state, producer_progress TO telemetry_writer;
