#!/usr/bin/env bash
# Render deploy/redis/users.acl for a server: replace each @<USER>_SHA256@ with the SHA-256 of
# <secrets>/redis_<user>_password (trailing newlines ignored, as the clients read them) and the
# {telemetry} hash tag with {<namespace>}. Users without a password file are left disabled.
#   usage: render-acl.sh SECRETS_DIR OUT_FILE [NAMESPACE]
set -euo pipefail
secrets=$1 out=$2 ns=${3:-telemetry}
[[ $ns =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "bad namespace: $ns" >&2; exit 2; }
acl=$(cat "$(dirname "$0")/users.acl")
for user in producer writer admin importer runs; do
  key="@${user^^}_SHA256@"
  file="$secrets/redis_${user}_password"
  if [ -s "$file" ]; then
    hash=$(tr -d '\r\n' < "$file" | sha256sum | cut -d' ' -f1)
    acl=${acl//"$key"/$hash}
  else
    acl=$(printf '%s\n' "$acl" | sed "s/^user $user on #$key/user $user off/")
  fi
done
acl=${acl//"{telemetry}"/"{$ns}"}
umask 077
printf '%s\n' "$acl" | grep -v '^#' > "$out"
