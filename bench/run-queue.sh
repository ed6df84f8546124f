#!/bin/sh
# Write-queue benchmark: a spike of single-row INSERTs straight to PostgreSQL and
# through Levee's write queue (/* levee:async */) (bench/write_queue.py).
# Usage: bench/run-queue.sh [--quick] /abs/path/to/levee   (what `make bench-queue` runs)
# Environment: BENCH_QUICK=1, BENCH_SECONDS, BENCH_ROUNDS, ... (see bench/README.md).
# Everything it starts (PostgreSQL, Redis, Levee, pgbench) is stopped when it ends,
# fails, or is interrupted. write_queue.py checks the arguments.
set -eu
# 128 clients plus Levee's servers: well within the default limit, but be safe.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 "$(dirname "$0")/write_queue.py" "$@"
