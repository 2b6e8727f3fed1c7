#!/usr/bin/env bash
# Install (if absent) and start local Redis and PostgreSQL for development, the demo and CI.
# Debian/Ubuntu, as root. Safe to run twice. Used by .ci/run and deploy/demo.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
log() { printf '\n== %s\n' "$*"; }

# ---- system packages (only what is missing) ------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql postgresql-contrib)
command -v socat >/dev/null || missing+=(socat)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# docker-compose (v1, Debian) validates docker-compose.yml in tests/ops; no engine is needed,
# so not its recommended docker.io.
if ! command -v docker-compose >/dev/null; then
  log "installing docker-compose (config validation only)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

# ---- Redis ------------------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 ping

# ---- PostgreSQL ---------------------------------------------------------------------------
pg_version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_version" ]; then
  pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  log "creating PostgreSQL $pg_version cluster"
  pg_createcluster "$pg_version" main
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  log "starting PostgreSQL $pg_version"
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
if ! PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
  # A fresh Debian cluster wants a password on TCP; the test server trusts loopback only.
  log "allowing trusted loopback connections for the test server"
  hba=$(su postgres -c "psql -tAc 'show hba_file'")
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  su postgres -c "psql -qc 'select pg_reload_conf()'"
fi
psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select version()'

