#!/bin/sh
# Result-cache benchmark: Levee with its cache next to Levee without, Pgpool-II's
# query cache and PostgreSQL direct (bench/cache.py).
# Usage: bench/run-cache.sh [--quick] /abs/path/to/levee   (what `make bench-cache` runs)
# Environment: BENCH_QUICK=1, BENCH_SECONDS, BENCH_ROUNDS, ... (see bench/README.md).
# Everything it starts (PostgreSQL, Redis, the proxies, pgbench) is stopped when it
# ends, fails, or is interrupted. cache.py checks the arguments.
exec /usr/bin/python3 "$(dirname "$0")/cache.py" "$@"
