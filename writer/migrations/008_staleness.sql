-- Issue 19: staleness (a channel is stale when it has not arrived for longer than its timeout).
-- The Grafana reader's rights are in writer/migrations/roles/telemetry_reader.sql.
--
-- current_state gains two columns kept by a trigger (the writer's upsert is unchanged):
--   last_good_at  observed_at of the channel's last value with quality good or warn (a no_data
--                 or error reading, or a null, arrives but is not a good value);
--   interval_s    the channel's arrival interval (updated_at to updated_at), smoothed (EWMA 0.2).
-- staleness_rules holds the timeouts, written by `telemetry-admin migrate` from
-- TELEMETRY_STALENESS__RULES: the first rule (by position) whose source and channel LIKE
-- patterns match applies; timeout_s fixed, or auto_factor x interval_s (at least auto_min_s);
-- neither = never stale. No matching rule = never stale.
-- current_state_status is current_state with, per channel, stale_after_s and stale (arrival,
-- updated_at, older than stale_after_s): a no_data reading arrives, so it is not stale; a channel
-- absent from the frames is.
ALTER TABLE current_state ADD COLUMN IF NOT EXISTS last_good_at timestamptz;
ALTER TABLE current_state ADD COLUMN IF NOT EXISTS interval_s double precision;
UPDATE current_state SET last_good_at = observed_at
 WHERE quality IN ('good', 'warn') AND (value IS NOT NULL OR text_value IS NOT NULL);

CREATE FUNCTION current_state_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.updated_at > OLD.updated_at THEN
        NEW.interval_s := CASE
            WHEN OLD.interval_s IS NULL THEN extract(epoch FROM NEW.updated_at - OLD.updated_at)
            ELSE 0.8 * OLD.interval_s + 0.2 * extract(epoch FROM NEW.updated_at - OLD.updated_at)
        END;
    END IF;
    IF NEW.quality IN ('good', 'warn') AND (NEW.value IS NOT NULL OR NEW.text_value IS NOT NULL) THEN
        NEW.last_good_at := NEW.observed_at;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER current_state_track BEFORE INSERT OR UPDATE ON current_state
    FOR EACH ROW EXECUTE FUNCTION current_state_track();

CREATE TABLE staleness_rules (
    position      integer PRIMARY KEY,
    source_like   text    NOT NULL,
    channel_like  text    NOT NULL,
    timeout_s     double precision CHECK (timeout_s > 0),
    auto_factor   double precision CHECK (auto_factor > 0),
    auto_min_s    double precision NOT NULL DEFAULT 0 CHECK (auto_min_s >= 0),
    CHECK (timeout_s IS NULL OR auto_factor IS NULL)
);

CREATE VIEW current_state_status AS
SELECT cs.source, cs.device, cs.channel, cs.observed_at, cs.value, cs.text_value, cs.unit, cs.quality,
       cs.session, cs.updated_at AS last_seen_at, cs.last_good_at, cs.interval_s, r.stale_after_s,
       coalesce(now() - cs.updated_at > make_interval(secs => r.stale_after_s), false) AS stale
  FROM current_state cs
  LEFT JOIN LATERAL (
      SELECT coalesce(x.timeout_s,
                      CASE WHEN cs.interval_s IS NOT NULL
                           THEN greatest(x.auto_factor * cs.interval_s, x.auto_min_s) END) AS stale_after_s
        FROM staleness_rules x
       WHERE cs.source LIKE x.source_like AND cs.channel LIKE x.channel_like
       ORDER BY x.position
       LIMIT 1
  ) r ON true;

GRANT SELECT ON staleness_rules, current_state_status TO telemetry_writer;

