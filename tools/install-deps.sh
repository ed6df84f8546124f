#!/bin/sh
# Installs the Debian packages Levee needs to build, test, run and benchmark,
# and only those that are missing. Run by `make check`, `make run` and
# `make bench`. Needs root (or sudo) only when something is missing.
set -eu
PKGS="build-essential pkg-config libevent-dev libssl-dev libhiredis-dev libinih-dev \
libcjson-dev libpg-query-dev libcmocka-dev valgrind \
postgresql-15 postgresql-client-15 redis-server \
python3-pytest python3-psycopg python3-redis python3-filelock python3-pytest-timeout \
pgbouncer pgpool2 procps iproute2 openssl bzip2 xz-utils"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
