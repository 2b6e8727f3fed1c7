#!/usr/bin/env bash
# PostgreSQL first-start init (mounted into /docker-entrypoint-initdb.d; runs once, on an empty
# data directory, as the superuser). Creates the telemetry database and its two roles:
#
#   telemetry_owner   owns the database and the schema; `telemetry-admin migrate` runs as it.
#   telemetry_writer  what telemetry-write and telemetry-admin status connect as.
#
# The tables themselves are created by the one-shot `migrate` service, never here, so a box
# without Docker runs the same migration (`telemetry-admin migrate`). Passwords come from the
# secret files, never from this script. On a box without Docker, run this script once as the
# postgres OS user with PG_OWNER_PASSWORD_FILE / PG_WRITER_PASSWORD_FILE set.
set -euo pipefail

owner_pw_file="${PG_OWNER_PASSWORD_FILE:-/run/secrets/pg_owner_password}"
writer_pw_file="${PG_WRITER_PASSWORD_FILE:-/run/secrets/pg_writer_password}"
db="${TELEMETRY_DB:-telemetry}"
schema="${TELEMETRY_SCHEMA:-telemetry}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v owner_pw="$(cat "$owner_pw_file")" -v writer_pw="$(cat "$writer_pw_file")" -v db="$db" <<'SQL'
SELECT format('CREATE ROLE telemetry_owner LOGIN PASSWORD %L', :'owner_pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_owner') \gexec
SELECT format('CREATE ROLE telemetry_writer LOGIN PASSWORD %L', :'writer_pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'telemetry_writer') \gexec
SELECT format('CREATE DATABASE %I OWNER telemetry_owner', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO telemetry_writer', :'db') \gexec
SQL

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$db" -v schema="$schema" <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION telemetry_owner', :'schema') \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO telemetry_writer', :'schema') \gexec
-- Tables the migration (run as telemetry_owner) creates later: the writer may read and write rows.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE telemetry_owner IN SCHEMA %I'
              ' GRANT SELECT, INSERT, UPDATE ON TABLES TO telemetry_writer', :'schema') \gexec
-- The writer also creates tomorrow's daily partitions and drops those past retention
-- (writer/partitions.py), which PostgreSQL allows only to the owner of the partitioned
-- table. Until that job moves to a process running as telemetry_owner, the writer is a
-- member of the owner role. Remove this grant if partitions are maintained elsewhere.
GRANT telemetry_owner TO telemetry_writer;
SQL
echo "telemetry: database $db, schema $schema, roles telemetry_owner and telemetry_writer ready"
