#!/bin/sh
# Result-cache benchmark: Levee with its cache next to Levee without, Pgpool-II's
# query cache and PostgreSQL direct (bench/cache.py).
# Usage: bench/run-cache.sh [--quick] /abs/path/to/levee   (what `make bench-cache` runs)
# Environment: BENCH_QUICK=1, BENCH_SECONDS, BENCH_ROUNDS, ... (see bench/README.md).
# Everything it starts (PostgreSQL, Redis, the proxies, pgbench) is stopped when it
# ends, fails, or is interrupted.
set -eu
quick=
if [ "${1:-}" = "--quick" ]; then
	quick=--quick
	shift
fi
if [ $# -ne 1 ]; then
	echo "usage: $0 [--quick] /abs/path/to/levee" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$here/cache.py" $quick "$1"
