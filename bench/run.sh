#!/bin/sh
# Benchmarks Levee side by side with PgBouncer, Pgpool-II and PostgreSQL direct.
# Usage: bench/run.sh [--quick] /abs/path/to/levee   (what `make bench` runs)
# Environment: BENCH_QUICK=1, BENCH_SECONDS, BENCH_ROUNDS, ... (see bench/README.md).
# Everything it starts (PostgreSQL, the proxies, pgbench) is stopped when it
# ends, fails, or is interrupted (bench.py's try/finally and tools/stack.py).
# bench.py checks the arguments (bench.parse_command).
set -eu
# 10,000 idle clients need as many descriptors in Levee and in the client.
# Raise the soft limit to 65536, or as far as the hard limit allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"
