-- Issue 13 (least privilege), finding 4: the partition functions a stolen writer credential can
-- call are bounded, and the shipped retention floor is a sane number of days.
--
-- Before: the writer role could call ensure_partitions('1900-01-01', ...) again and again (any
-- number of partitions), and drop_partitions_before(current_date - 1) dropped every partition
-- older than a day (min_retention_days shipped as 1).
--
-- Now, for any caller that does not own the tables (the writer role; the owner and superusers,
-- i.e. telemetry-admin run as the owner, are not bounded):
--   ensure_partitions      only days in [today - retention, today + 31]; retention is
--                          retention_policy.retention_days (stored by `telemetry-admin migrate`
--                          from TELEMETRY_WRITER__RETENTION_DAYS), 3660 days when none is stored;
--   drop_expired_partitions, prune_frame_keys
--                          only days older than that retention (and never inside the floor
--                          min_retention_days, for every caller, as before);
--   drop_partitions_before no longer granted to the writer role (it never calls it).
-- The bodies stay those of 003/004 (renamed *_unbounded, owner only); the functions under the
-- old names check the caller and the dates, then call them.
ALTER TABLE retention_policy ADD COLUMN IF NOT EXISTS retention_days integer CHECK (retention_days >= 1);
ALTER TABLE retention_policy ALTER COLUMN min_retention_days SET DEFAULT 7;
UPDATE retention_policy SET min_retention_days = 7 WHERE min_retention_days < 7;

ALTER FUNCTION ensure_partitions(date, date) RENAME TO ensure_partitions_unbounded;
ALTER FUNCTION drop_expired_partitions(date, integer) RENAME TO drop_expired_partitions_unbounded;
ALTER FUNCTION prune_frame_keys(date, integer) RENAME TO prune_frame_keys_unbounded;
REVOKE ALL ON FUNCTION ensure_partitions_unbounded(date, date), drop_expired_partitions_unbounded(date, integer),
    prune_frame_keys_unbounded(date, integer), drop_partitions_before(date) FROM PUBLIC, telemetry_writer;

-- True when the session's user owns the tables (or is a superuser): telemetry-admin as the owner.
CREATE FUNCTION caller_owns_tables() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT pg_has_role(session_user, c.relowner, 'MEMBER') FROM pg_class c WHERE c.oid = 'readings_packed'::regclass
$$;

-- The retention a non-owner may act within: days older than this are its to drop; partitions
-- may be created back to it.
CREATE FUNCTION writer_retention_days() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT coalesce((SELECT retention_days FROM retention_policy), 3660)
$$;

CREATE FUNCTION ensure_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF NOT caller_owns_tables()
       AND (first_day < today - writer_retention_days() - 1 OR last_day > today + 31) THEN
        RAISE EXCEPTION 'ensure_partitions(%, %): only days from % to % (retention_policy)', first_day, last_day,
            today - writer_retention_days() - 1, today + 31
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN ensure_partitions_unbounded(first_day, last_day);
END $$;

CREATE FUNCTION drop_expired_partitions(cutoff date, max_days integer) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    limit_day date := (now() AT TIME ZONE 'UTC')::date - writer_retention_days();
BEGIN
    IF NOT caller_owns_tables() AND cutoff > limit_day THEN
        RAISE WARNING 'drop_expired_partitions(%): the retention (retention_policy) keeps days from %', cutoff, limit_day;
        cutoff := limit_day;
    END IF;
    RETURN drop_expired_partitions_unbounded(cutoff, max_days);
END $$;

CREATE FUNCTION prune_frame_keys(cutoff date, max_rows integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    limit_day date := (now() AT TIME ZONE 'UTC')::date - writer_retention_days();
BEGIN
    IF NOT caller_owns_tables() THEN
        cutoff := least(cutoff, limit_day);
    END IF;
    RETURN prune_frame_keys_unbounded(cutoff, max_rows);
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION caller_owns_tables() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION writer_retention_days() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION ensure_partitions(date, date) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION drop_expired_partitions(date, integer) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION prune_frame_keys(date, integer) SET search_path = %I, pg_temp', current_schema());
END $$;

REVOKE ALL ON FUNCTION caller_owns_tables(), writer_retention_days(), ensure_partitions(date, date),
    drop_expired_partitions(date, integer), prune_frame_keys(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_partitions(date, date), drop_expired_partitions(date, integer),
    prune_frame_keys(date, integer) TO telemetry_writer;
