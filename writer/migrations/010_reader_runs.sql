-- Issue 19: the Grafana data dashboard's "Recent runs" panel reads the runs table of migration
-- 009; telemetry_reader (migration 008) may SELECT it, and nothing else of the runs tables.
GRANT SELECT ON runs TO telemetry_reader;
