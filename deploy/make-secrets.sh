#!/usr/bin/env bash
# Create the password files docker-compose.yml mounts as secrets (deploy/secrets/, git-ignored).
# Existing files are kept. Readable by root and the image's group (gid 10001) only.
# The Redis ACL users (deploy/redis/users.acl) must carry the same passwords (see its header).
set -euo pipefail
cd "$(dirname "$0")/secrets"
umask 027
for name in redis_producer_password redis_writer_password redis_importer_password \
            pg_superuser_password pg_owner_password pg_writer_password; do
  [ -s "$name" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$name"
  chgrp 10001 "$name" 2>/dev/null || true
  chmod 0640 "$name"
done
ls -l
