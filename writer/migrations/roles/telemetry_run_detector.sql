-- The run detector's own role: telemetry_run_detector, what telemetry-runs connects as (compose's
-- `runs` service). deploy/postgres/10-roles.sh creates it (LOGIN with the password of
-- PG_RUNS_PASSWORD_FILE; NOLOGIN when that file is absent). It is NOT a member of telemetry_runs:
-- it gets exactly what runs/detector.py and the store functions it calls (runs/store.py
-- create_run, get_run, stop_run, summarise_run) use:
--   readings             SELECT (a view: it reads with its owner's rights, nothing of
--                        readings_packed directly; the summaries)
--   runs                 SELECT, INSERT (a new run; the identity column needs no sequence grant),
--                        UPDATE of ended_at, status, end_key, end_entry (closing) and summary only
--   run_detector_state   SELECT, INSERT, UPDATE (INSERT ... ON CONFLICT DO UPDATE)
--   run_detector_position SELECT, INSERT, UPDATE (same)
-- Advisory locks need no grant. No DELETE, no TRUNCATE, no DDL, nothing of run_marks,
-- producer_progress, the ledger or the name tables; CONNECT (not TEMPORARY) comes from 10-roles.sh.
GRANT SELECT ON readings TO telemetry_run_detector;
GRANT SELECT, INSERT ON runs TO telemetry_run_detector;
GRANT UPDATE (ended_at, status, end_key, end_entry, summary) ON runs TO telemetry_run_detector;
GRANT SELECT, INSERT, UPDATE ON run_detector_state, run_detector_position TO telemetry_run_detector;
