-- telemetry_runs: a NOLOGIN group for the operators who manage runs (telemetry-admin run ...);
-- grant it to a login role (CREATE ROLE runs_login LOGIN IN ROLE telemetry_runs). It reads the
-- readings view (a view reads with its owner's rights: nothing of readings_packed directly) and
-- writes the runs tables only; no DELETE except of marks, no DDL.
GRANT SELECT ON readings TO telemetry_runs;
GRANT SELECT, INSERT, UPDATE ON runs, run_detector_state, run_detector_position TO telemetry_runs;
GRANT SELECT, INSERT, DELETE ON run_marks TO telemetry_runs;
