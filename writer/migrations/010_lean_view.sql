-- Issue 15: typical queries no slower than the long layout's. A query of the `readings` view is
-- planned on every execution (a time bound keeps PostgreSQL from caching a generic plan), and
-- for a short query such as "one channel of one device, last hour" planning is a third of the
-- server's work. This migration takes out what the planner did for nothing; the columns, their
-- types and what they return are those of migration 004.
--
-- 1. The view: the same rows, written without the LATERAL subquery and without the explicit
--    JOIN of series (a comma join is planned without a join RTE carrying every column of both
--    tables); array_position is written where it is used (PostgreSQL evaluated the pulled-up
--    subquery's expression at each use already).
-- 2. Partitions no longer keep the CHECK constraint they were created with: it spared ATTACH a
--    scan of an empty table, and the planner tested it on every partition of every query
--    (constraint exclusion of partitions). ensure_partitions drops it after the ATTACH, in the
--    same transaction; the partition bound, which PostgreSQL enforces, is unchanged.
CREATE OR REPLACE VIEW readings AS
SELECT f.observed_at,
       f.received_at,
       s.source,
       s.device,
       s.channel,
       f.num_values[array_position(f.series, s.id)] AS value,
       f.text_values[array_position(f.series, s.id)] AS text_value,
       s.unit,
       ((ARRAY['good', 'warn', 'no_data', 'error'])[coalesce(f.qualities[array_position(f.series, s.id)], 0) + 1])::text
           AS quality,
       ss.session,
       p.producer,
       f.seq
  FROM series s, readings_packed f
  LEFT JOIN sessions ss ON ss.id = f.session_id
  LEFT JOIN producers p ON p.id = f.producer_id
 WHERE s.device_id = f.device_id
   AND array_position(f.series, s.id) IS NOT NULL;

CREATE OR REPLACE FUNCTION ensure_partitions_unbounded(first_day date, last_day date) RETURNS integer
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
            EXECUTE format('CREATE TABLE %I (LIKE readings_packed INCLUDING DEFAULTS)', part);
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (observed_at >= %L AND observed_at < %L)',
                           part, part || '_range', lo, hi);
            EXECUTE format('ALTER TABLE readings_packed ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           part, lo, hi);
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_range');
            n := n + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION ensure_partitions_unbounded(date, date) FROM PUBLIC;

DO $$
DECLARE
    part text;
BEGIN
    FOR part IN SELECT c.relname FROM pg_inherits i
                  JOIN pg_class c ON c.oid = i.inhrelid
                  JOIN pg_constraint k ON k.conrelid = c.oid AND k.conname = c.relname || '_range' AND k.contype = 'c'
                 WHERE i.inhparent = 'readings_packed'::regclass ORDER BY 1 LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_range');
    END LOOP;
END $$;
