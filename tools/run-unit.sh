#!/bin/sh
# Runs each unit-test executable with a time limit (and under valgrind when
# VALGRIND=1), prints one summary line, and fails if any test failed.
set -u
passed=0 failed=0
for t in "$@"; do
	if [ "${VALGRIND:-}" = 1 ]; then
		cmd="valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99 $t"
	else
		cmd="$t"
	fi
	if timeout 120 $cmd >"$t.log" 2>&1; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAILED: $t"; cat "$t.log"
	fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" = 0 ]
