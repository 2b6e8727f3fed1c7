#!/usr/bin/env bash
# Run the whole pipeline on this machine without Docker: local Redis + PostgreSQL, the
# schema, two writer replicas and a simulate producer. Ctrl-C stops everything cleanly.
#
# The demo's settings (DSN, namespace, ...) are written to an env file (default .demo.env in the
# repository, or DEMO_ENV_FILE) that the hints printed below `source` in another shell.
# TELEMETRY_* variables already set are kept (for example a namespace of your own).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/local-services.sh >/dev/null
python3 -m pip install -q --disable-pip-version-check -e .
export TELEMETRY_POSTGRES__DSN="${TELEMETRY_POSTGRES__DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"
export TELEMETRY_SIMULATE__RATE_HZ="${TELEMETRY_SIMULATE__RATE_HZ:-50}"
envfile="${DEMO_ENV_FILE:-$PWD/.demo.env}"
(
  umask 077
  echo "# Settings of the demo started by deploy/demo.sh; in another shell: source $envfile"
  for name in $(compgen -e | grep '^TELEMETRY_' | grep -v '__PORT$' | sort); do
    printf 'export %s=%q\n' "$name" "${!name}"
  done
) >"$envfile"
schema="${TELEMETRY_POSTGRES__SCHEMA_NAME:-telemetry}"
telemetry-admin migrate
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
telemetry-write --consumer demo-writer-1 & pids+=($!)
TELEMETRY_HTTP__PORT=9118 telemetry-write --consumer demo-writer-2 & pids+=($!)
telemetry-produce simulate & pids+=($!)
echo "pipeline running; in another shell:"
echo "  source $envfile   # the demo's settings: DSN, namespace"
echo "  telemetry-admin status   # live view (--json: one snapshot)"
echo "  telemetry-admin streams"
echo "  curl -s 127.0.0.1:9108/metrics | grep frames_committed   # writer metrics; :9109 the producer's"
echo "  psql \"\$TELEMETRY_POSTGRES__DSN\" -c 'select device, channel, value, observed_at from $schema.current_state'"
wait
