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
--    same transaction (drop_partition_checks); the partition bound, which PostgreSQL enforces,
--    is unchanged.
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

-- The CHECKs are dropped by one function, here for the existing partitions and by
-- ensure_partitions after it creates and attaches new ones (004's body, kept under another name;
-- the advisory lock it takes holds until the caller's commit, so replicas do not race here).
CREATE FUNCTION drop_partition_checks() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
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
REVOKE ALL ON FUNCTION drop_partition_checks() FROM PUBLIC;

ALTER FUNCTION ensure_partitions_unbounded(date, date) RENAME TO ensure_partitions_v004;
CREATE FUNCTION ensure_partitions_unbounded(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    n integer := ensure_partitions_v004(first_day, last_day);
BEGIN
    PERFORM drop_partition_checks();
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION ensure_partitions_unbounded(date, date) FROM PUBLIC;

SELECT drop_partition_checks();
