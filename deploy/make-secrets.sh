#!/usr/bin/env bash
# Create the password files docker-compose.yml mounts as secrets (deploy/secrets/, git-ignored),
# and deadletter_key, which signs dead letters (writer and telemetry-admin share it).
# Existing files are kept. Readable by root and the image's group (gid 10001) only.
# Then renders the Redis ACL file (template deploy/redis/users.acl) with those passwords into
# deploy/secrets/users.acl, which the redis service mounts.
set -euo pipefail
cd "$(dirname "$0")/secrets"
umask 027
for name in redis_producer_password redis_writer_password redis_importer_password redis_admin_password \
            redis_runs_password pg_superuser_password pg_owner_password pg_writer_password pg_runs_password \
            pg_grafana_password deadletter_key; do
  [ -s "$name" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$name"
  chgrp 10001 "$name" 2>/dev/null || true
  chmod 0640 "$name"
done
bash ../redis/render-acl.sh . users.acl "${TELEMETRY_REDIS__NAMESPACE:-telemetry}"
chgrp 999 users.acl 2>/dev/null || true  # the redis image runs as uid/gid 999
chmod 0640 users.acl
ls -l
