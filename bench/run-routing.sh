#!/bin/sh
# Read/write-splitting benchmark: Levee routing pgbench -S to two replicas, next to
# Levee primary-only, Pgpool-II load balancing and PostgreSQL direct (bench/routing.py).
# Usage: bench/run-routing.sh [--quick] /abs/path/to/levee
# Environment: BENCH_QUICK=1, BENCH_SECONDS, BENCH_ROUNDS, ... (see bench/README.md).
# Everything it starts (three PostgreSQL servers, the proxies, pgbench) is stopped
# when it ends, fails, or is interrupted. routing.py checks the arguments.
exec /usr/bin/python3 "$(dirname "$0")/routing.py" "$@"
