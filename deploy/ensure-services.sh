#!/usr/bin/env bash
# Make sure Postgres (127.0.0.1:5432, trust) and Redis (127.0.0.1:6379) answer.
# On the project machine they already run; on a fresh Debian machine this
# installs Debian's packages and starts private instances. Kafka (Tansu) and
# ClickHouse (chDB) come from Python packages and are started by the tests.
set -euo pipefail

PG_PORT=${FOLIO_CI_PG_PORT:-5432}
REDIS_PORT=${FOLIO_CI_REDIS_PORT:-6379}
STATE=${FOLIO_CI_STATE:-/var/tmp/folio-ci}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "ensure-services: $* missing and apt-get unavailable" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

if ! command -v pg_isready >/dev/null || ! pg_up; then
  command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || apt_install postgresql
  if ! pg_up && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -n1)" main start 2>/dev/null || true
  fi
  if ! pg_up || ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
    # A private trust-auth cluster, as the tests expect (user postgres, database test).
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -n1)")
    data="$STATE/pg"
    mkdir -p "$STATE" && chmod 755 "$STATE"
    if [ ! -f "$data/PG_VERSION" ]; then
      install -d -o postgres -g postgres "$data"
      su postgres -s /bin/sh -c "$bin/initdb -D $data -U postgres --auth=trust >/dev/null"
    fi
    su postgres -s /bin/sh -c "$bin/pg_ctl -D $data -l $data/log -o '-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data' -w start >/dev/null"
  fi
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tc "select 1 from pg_database where datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'create database test' >/dev/null
fi
pg_up && echo "postgres: ready on 127.0.0.1:$PG_PORT"

if ! command -v redis-cli >/dev/null || ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --pidfile "$STATE-redis.pid" --logfile "$STATE-redis.log" >/dev/null
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
fi
redis_up && echo "redis: ready on 127.0.0.1:$REDIS_PORT"

# Headless Chromium for the browser test (tests/test_browser.py drives
# /usr/bin/chromium over the DevTools protocol; test tools cannot download one here).
[ -x /usr/bin/chromium ] || apt_install chromium
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"
