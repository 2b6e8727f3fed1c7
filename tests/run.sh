#!/usr/bin/env bash
# The test command: on a fresh Debian/Ubuntu machine (as root) it installs what is missing,
# starts local Redis and PostgreSQL if they are not running (deploy/local-services.sh; servers
# already running are used as they are, never restarted), installs this package with its test
# extras (editable) and runs the whole suite. Arguments go to pytest:
#
#   bash tests/run.sh                 # everything, as CI runs it (.ci/run calls exactly this)
#   bash tests/run.sh -k spool -x     # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== %s\n' "$*"; }

bash deploy/local-services.sh

log "installing the package and its test dependencies"
python3 -m pip install -q --disable-pip-version-check -e ".[dev,obd,archive,can,mf4,plot]"

log "running tests"
exec python3 -m pytest "$@"
