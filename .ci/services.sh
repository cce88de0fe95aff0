#!/usr/bin/env bash
# Make sure the real services the tests need are present and running on 127.0.0.1:
# PostgreSQL 15 with PostGIS, Redis 7, Mosquitto, and Chromium for the browser tests.
# Installs Debian packages only when something is missing and we run as root.
# Idempotent: a second run changes nothing.
set -uo pipefail

PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
TEST_DB=${CITYOPS_TEST_DB:-cityops_test}
export PGHOST PGUSER

say() { echo "services: $*"; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_updated=0
apt_install() {
  if ! is_root; then
    say "cannot install $* (not root); install them with: sudo apt-get install $*"
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- PostgreSQL ---------------------------------------------------------------------
if ! pg_isready -q -h "$PGHOST" 2>/dev/null; then
  say "PostgreSQL is not answering; trying to start it"
  if command -v pg_ctlcluster >/dev/null; then pg_ctlcluster 15 main start 2>/dev/null || true; fi
  for _ in $(seq 1 20); do pg_isready -q -h "$PGHOST" && break; sleep 0.5; done
fi

if pg_isready -q -h "$PGHOST" 2>/dev/null; then
  if ! psql -qAtX -d postgres -c "SELECT 1 FROM pg_available_extensions WHERE name='postgis'" | grep -q 1; then
    apt_install postgresql-15-postgis-3 || true
  fi
  if ! psql -qAtX -d postgres -c "SELECT 1 FROM pg_database WHERE datname='$TEST_DB'" | grep -q 1; then
    psql -qX -d postgres -c "CREATE DATABASE $TEST_DB" >/dev/null
  fi
  if psql -qX -d "$TEST_DB" -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null 2>&1; then
    say "PostgreSQL + PostGIS ready ($TEST_DB)"
  else
    say "PostGIS is not available in PostgreSQL; the PostGIS tests will report it"
  fi
else
  say "PostgreSQL is not running on $PGHOST:5432; the database tests will report it"
fi

# --- Redis --------------------------------------------------------------------------
if ! port_open 6379; then
  if command -v redis-server >/dev/null; then
    say "starting redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 20); do port_open 6379 && break; sleep 0.25; done
  fi
fi
port_open 6379 && say "Redis ready" || say "Redis is not running on 6379"

# --- Mosquitto ----------------------------------------------------------------------
if ! command -v mosquitto >/dev/null; then apt_install mosquitto || true; fi
if ! command -v mosquitto_pub >/dev/null; then apt_install mosquitto-clients || true; fi
if ! port_open 1883; then
  if command -v mosquitto >/dev/null; then
    say "starting mosquitto"
    mosquitto -d -p 1883 >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do port_open 1883 && break; sleep 0.25; done
  fi
fi
port_open 1883 && say "Mosquitto ready" || say "Mosquitto is not running on 1883"

# --- Chromium for browser tests --------------------------------------------------------
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# Chinese text in screenshots needs a CJK font; the package is what we check (fc-list
# comes with fontconfig, which a bare machine may lack).
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
# The console's browser script is also run under Node.js in the unit tests.
command -v node >/dev/null || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}" || true; fi
command -v chromium >/dev/null && say "Chromium ready" || say "Chromium is not installed"
exit 0
