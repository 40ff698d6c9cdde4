#!/usr/bin/env bash
# Write an env file for docker-compose.yaml from .env.example: every `change-me` becomes a fresh
# random secret (a Fernet key for AIRFLOW_FERNET_KEY), then KEY=VALUE arguments override lines.
#   scripts/compose_env.sh .env                         # make up, first time
#   scripts/compose_env.sh artifacts/compose-test/env AIRFLOW_PORT=18080   # compose-test
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: $0 OUT_FILE [KEY=VALUE ...]}"
shift
secret() { local s; s="$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"; echo "${s:0:32}"; }
fernet() { head -c 32 /dev/urandom | base64 | tr '+/' '-_'; }
mkdir -p "$(dirname "$out")"
umask 077
{
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            AIRFLOW_FERNET_KEY=change-me) echo "AIRFLOW_FERNET_KEY=$(fernet)" ;;
            [A-Z]*=change-me) echo "${line%%=*}=$(secret)" ;;
            *) echo "$line" ;;
        esac
    done < .env.example
    for kv in "$@"; do echo "$kv"; done
} > "$out.tmp"
# a later KEY= line wins in docker-compose, but keep one line per key for people reading the file
for kv in "$@"; do
    key="${kv%%=*}"
    awk -v key="$key" -v kv="$kv" -F= '$1 == key { if (!done) { print kv; done = 1 } next } { print }' \
        "$out.tmp" > "$out.tmp2" && mv "$out.tmp2" "$out.tmp"
done
mv "$out.tmp" "$out"
