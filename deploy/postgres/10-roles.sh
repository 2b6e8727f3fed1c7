#!/usr/bin/env bash
# PostgreSQL first-start init (mounted into /docker-entrypoint-initdb.d; runs once, on an empty
# data directory, as the superuser). Creates the telemetry database and its two roles:
#
#   telemetry_owner   owns the database and the schema; `telemetry-admin migrate` runs as it.
#   telemetry_writer  what telemetry-write and telemetry-admin status connect as.
#   telemetry_reader  a group role: SELECT on readings, current state and runs (grants:
#                     writer/migrations/roles/telemetry_reader.sql).
#   telemetry_grafana the Grafana PostgreSQL datasource, a member of telemetry_reader; only when
#                     PG_GRAFANA_PASSWORD_FILE (default /run/secrets/pg_grafana_password) exists.
#   telemetry_runs    NOLOGIN group for the run detector and run verbs (grants: writer/migrations/roles/telemetry_runs.sql);
#                     grant it to a login role to run telemetry-runs with least privilege.
#   telemetry_run_detector  what telemetry-runs connects as (grants: writer/migrations/roles/telemetry_run_detector.sql, exactly what
#                     the detector uses; not a member of telemetry_runs). LOGIN with the password
#                     of PG_RUNS_PASSWORD_FILE; NOLOGIN when that file is absent.
#
# The tables themselves are created by the one-shot `migrate` service, never here, so a box
# without Docker runs the same migration (`telemetry-admin migrate`). Passwords come from the
# secret files, never from this script. On a box without Docker, run this script once as the
# postgres OS user with PG_OWNER_PASSWORD_FILE / PG_WRITER_PASSWORD_FILE set.
set -euo pipefail

owner_pw_file="${PG_OWNER_PASSWORD_FILE:-/run/secrets/pg_owner_password}"
writer_pw_file="${PG_WRITER_PASSWORD_FILE:-/run/secrets/pg_writer_password}"
grafana_pw_file="${PG_GRAFANA_PASSWORD_FILE:-/run/secrets/pg_grafana_password}"
runs_pw_file="${PG_RUNS_PASSWORD_FILE:-/run/secrets/pg_runs_password}"
db="${TELEMETRY_DB:-telemetry}"
schema="${TELEMETRY_SCHEMA:-telemetry}"

# psql's quoting of a \set value: backslash and single quote doubled-up, inside single quotes.
psql_literal() { local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\'\'}"; }

# The passwords go to psql on standard input (\set lines before the script), never in its argv,
# where `ps` would show them while it runs.
{
  printf '\\set owner_pw %s\n' "$(psql_literal "$(cat "$owner_pw_file")")"
  printf '\\set writer_pw %s\n' "$(psql_literal "$(cat "$writer_pw_file")")"
  if [ -s "$runs_pw_file" ]; then
    printf '\\set runs_pw %s\n' "$(psql_literal "$(cat "$runs_pw_file")")"
  else
    echo "telemetry: no $runs_pw_file: role telemetry_run_detector created without LOGIN" >&2
    printf '\\set runs_pw\n'
  fi
  cat <<'SQL'
SELECT format('CREATE ROLE telemetry_owner LOGIN PASSWORD %L', :'owner_pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_owner') \gexec
SELECT format('CREATE ROLE telemetry_writer LOGIN PASSWORD %L', :'writer_pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_writer') \gexec
-- The group role the Grafana login joins (rights: writer/migrations/roles/telemetry_reader.sql).
SELECT 'CREATE ROLE telemetry_reader NOLOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_reader') \gexec
SELECT 'CREATE ROLE telemetry_runs NOLOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_runs') \gexec
SELECT CASE WHEN :'runs_pw' = '' THEN 'CREATE ROLE telemetry_run_detector NOLOGIN'
            ELSE format('CREATE ROLE telemetry_run_detector LOGIN PASSWORD %L', :'runs_pw') END
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_run_detector') \gexec
SELECT format('CREATE DATABASE %I OWNER telemetry_owner', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO telemetry_writer', :'db') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO telemetry_run_detector', :'db') \gexec
-- TEMPORARY: the writer stages each batch's keys in a session temp table (writer/pg_copy.py).
SELECT format('GRANT TEMPORARY ON DATABASE %I TO telemetry_writer', :'db') \gexec
SQL
} | psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres -v db="$db"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$db" -v schema="$schema" <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION telemetry_owner', :'schema') \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO telemetry_writer', :'schema') \gexec
-- Table privileges come from writer/migrations/002_roles.sql (run by `telemetry-admin migrate`
-- as telemetry_owner): only the DML the writer needs, and partition maintenance through two
-- SECURITY DEFINER functions. The writer is not a member of the owner role.
SQL
if [ -r "$grafana_pw_file" ]; then
  {
    printf '\\set grafana_pw %s\n' "$(psql_literal "$(cat "$grafana_pw_file")")"
    cat <<'SQL'
SELECT format('CREATE ROLE telemetry_grafana LOGIN PASSWORD %L IN ROLE telemetry_reader', :'grafana_pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_grafana') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO telemetry_grafana', :'db') \gexec
SELECT format('ALTER ROLE telemetry_grafana SET search_path = %I', :'schema') \gexec
SQL
  } | psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres -v db="$db" -v schema="$schema"
fi
echo "telemetry: database $db, schema $schema, roles telemetry_owner, telemetry_writer, telemetry_runs and telemetry_run_detector ready"
