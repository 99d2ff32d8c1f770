#!/bin/sh
# First start: create the cluster with POSTGRES_USER / POSTGRES_PASSWORD and the database POSTGRES_DB, as the
# official image does; every start: run the server on all interfaces with password auth (extra arguments after
# `postgres` go to the server).
set -eu
if [ $# -gt 0 ] && [ "$1" != postgres ]; then
  exec "$@"  # any other command, as the official image allows (psql, pg_isready, a shell)
fi
for bin in /usr/lib/postgresql/*/bin; do :; done  # the last (newest) installed major version
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  "$bin/initdb" -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$db" != "postgres" ]; then
    "$bin/psql" -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
  fi
  "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
[ $# -gt 0 ] && shift
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
