-- Issue 13 (least privilege): loss accounting the writer role cannot rewrite.
--
-- producer_progress (frames committed and highest sequence seen per producer run) is the loss
-- metric: max_seq - frames frames are missing. Until now the writer role could UPDATE it, so a
-- stolen writer credential could erase every gap (UPDATE producer_progress SET frames = max_seq).
-- Now the writer role has SELECT only, and progress moves through record_progress(), a SECURITY
-- DEFINER function that counts nothing the caller says: given the keys of the batch, it counts
-- only those ledger rows (frame_keys) inserted by the calling transaction itself (xmin), so
-- frames rises exactly with committed ledger rows, once per transaction (progress_calls),
-- and max_seq only from those rows. Raising a count therefore needs new ledger rows, which stay
-- as evidence; no count can be lowered or set.
CREATE TABLE IF NOT EXISTS progress_calls (
    txid xid8 PRIMARY KEY
);

CREATE OR REPLACE FUNCTION record_progress(p_producers text[], p_seqs bigint[], p_sources text[])
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO progress_calls (txid) VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'record_progress: once per transaction' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Forget finished transactions; SKIP LOCKED so concurrent replicas never wait on each other.
    DELETE FROM progress_calls WHERE txid IN (
        SELECT txid FROM progress_calls
         WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
           FOR UPDATE SKIP LOCKED);
    WITH batch AS (
        SELECT DISTINCT ON (producer, seq) producer, seq, source
          FROM unnest(p_producers, p_seqs, p_sources) AS b(producer, seq, source)
    ), counted AS (
        SELECT b.producer, min(b.source) AS source, count(*) AS frames, max(b.seq) AS max_seq
          FROM batch b
          JOIN frame_keys k ON k.producer = b.producer AND k.seq = b.seq
         WHERE k.xmin = pg_current_xact_id()::xid
         GROUP BY b.producer
    )
    INSERT INTO producer_progress AS p (producer, source, frames, max_seq)
    SELECT producer, source, frames, max_seq FROM counted
    ON CONFLICT (producer) DO UPDATE
       SET frames = p.frames + excluded.frames,
           max_seq = greatest(p.max_seq, excluded.max_seq),
           last_seen = now();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION record_progress(text[], bigint[], text[]) SET search_path = %I, pg_temp',
                   current_schema());
END $$;

REVOKE ALL ON FUNCTION record_progress(text[], bigint[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_progress(text[], bigint[], text[]) TO telemetry_writer;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON producer_progress FROM telemetry_writer;
GRANT SELECT ON producer_progress TO telemetry_writer;
REVOKE ALL ON progress_calls FROM telemetry_writer;
