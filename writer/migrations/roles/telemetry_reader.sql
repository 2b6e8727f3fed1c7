-- telemetry_reader: what the Grafana PostgreSQL datasource (deploy/grafana, the "Edge telemetry:
-- data" dashboard) reads, nothing else; deploy/postgres/10-roles.sh makes the login that is its
-- member (telemetry_grafana). Views read with their owner's rights: nothing of readings_packed.
GRANT SELECT ON readings, current_state, current_state_status, producer_progress, runs TO telemetry_reader;
