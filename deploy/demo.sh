#!/usr/bin/env bash
# Run the whole pipeline on this machine without Docker: local Redis + PostgreSQL, the
# schema, two writer replicas and a simulate producer. Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/local-services.sh >/dev/null
python3 -m pip install -q --disable-pip-version-check -e .
export TELEMETRY_POSTGRES__DSN="${TELEMETRY_POSTGRES__DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"
export TELEMETRY_SIMULATE__RATE_HZ="${TELEMETRY_SIMULATE__RATE_HZ:-50}"
telemetry-admin migrate
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
telemetry-write --consumer demo-writer-1 & pids+=($!)
TELEMETRY_HTTP__PORT=9118 telemetry-write --consumer demo-writer-2 & pids+=($!)
telemetry-produce simulate & pids+=($!)
echo "pipeline running; in another shell:"
echo "  telemetry-admin status            # live view; metrics: curl 127.0.0.1:9108/metrics (writer), :9109 (producer)"
echo "  telemetry-admin streams"
echo "  psql -h 127.0.0.1 -U postgres -c 'select device, channel, value, observed_at from telemetry.current_state'"
wait
