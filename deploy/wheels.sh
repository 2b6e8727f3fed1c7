#!/usr/bin/env bash
# Build and install the package as wheels: the steps the Dockerfile runs, and the steps
# tests/ops/test_wheel.py runs into a fresh virtual environment (so both stay the same).
#
#   deploy/wheels.sh build DIR      # in the source tree: wheels of the package and its deps into DIR
#   deploy/wheels.sh install DIR    # install them, offline, from DIR only (never editable)
#
# PYTHON selects the interpreter (default python3); EXTRAS the optional extras (default obd).
set -euo pipefail
python=${PYTHON:-python3}
extras=${EXTRAS-obd}
action=${1:?usage: wheels.sh build|install DIR}
dir=${2:?usage: wheels.sh build|install DIR}
case "$action" in
  build)
    # pip builds the project's wheel in an isolated environment with the newest build backend
    # allowed by pyproject.toml, then fetches or builds a wheel for every dependency.
    "$python" -m pip wheel --disable-pip-version-check --wheel-dir "$dir" ".${extras:+[$extras]}"
    ;;
  install)
    "$python" -m pip install --disable-pip-version-check --no-index --find-links "$dir" \
      "edge-telemetry${extras:+[$extras]}"
    ;;
  *) echo "wheels.sh: unknown action '$action' (build or install)" >&2; exit 2 ;;
esac
