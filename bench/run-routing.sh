#!/bin/sh
# Read/write-splitting benchmark: Levee routing pgbench -S to two replicas, next to
# Levee primary-only, Pgpool-II load balancing and PostgreSQL direct (bench/routing.py).
# Usage: bench/run-routing.sh /abs/path/to/levee
# Environment: BENCH_QUICK=1, BENCH_SECONDS, BENCH_ROUNDS, ... (see bench/README.md).
# Everything it starts (three PostgreSQL servers, the proxies, pgbench) is stopped
# when it ends, fails, or is interrupted.
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 /abs/path/to/levee" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$here/routing.py" "$1"
