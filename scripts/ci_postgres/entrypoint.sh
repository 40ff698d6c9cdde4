#!/bin/sh
# The official postgres image's start-up, reduced to what docker-compose.yaml uses: on an empty
# $PGDATA create the cluster (superuser $POSTGRES_USER, password $POSTGRES_PASSWORD) and the
# database $POSTGRES_DB; then run postgres with the given arguments. The port is $PGPORT.
set -eu
if [ "${1:-}" = postgres ]; then
    shift
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        user="${POSTGRES_USER:-postgres}"
        pwfile="$(mktemp)"
        printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}" > "$pwfile"
        initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        db="${POSTGRES_DB:-$user}"
        if [ "$db" != postgres ]; then
            pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
            createdb -U "$user" "$db"
            pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        fi
        echo "created the cluster in $PGDATA (user $user, database $db)"
    fi
    exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
