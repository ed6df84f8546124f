#!/bin/sh
# `make run`: a throwaway PostgreSQL primary with one streaming replica and a
# Redis (tools/stack.py), a database "app" owned by user "app" (password "app")
# with a small demo table, a Levee config for them in the stack directory, and
# Levee itself in the foreground.
#
# Ctrl-C (SIGINT) reaches Levee, which shuts down gracefully; then this script
# stops the stack. stack.py runs as a background job, so it ignores the
# terminal's SIGINT and only stops when told to (SIGTERM), after Levee.
#
# Usage: tools/run-stack.sh /path/to/levee
set -eu

BIN=${1:?usage: tools/run-stack.sh LEVEE_BINARY}
PYTHON=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$BIN" ] || { echo "run-stack: $BIN is not an executable" >&2; exit 2; }

work=$(mktemp -d /tmp/levee-run-XXXXXX)
stack_pid=""
levee_rc=0

cleanup() {
	trap - EXIT INT TERM HUP
	if [ -n "$stack_pid" ]; then
		kill -TERM "$stack_pid" 2>/dev/null || :
		wait "$stack_pid" 2>/dev/null || :
		echo "run-stack: stack stopped" >&2
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# stack.py prints one JSON line once everything answers, then waits for SIGTERM.
mkfifo "$work/stack.json"
"$PYTHON" "$here/stack.py" up --replicas 1 --redis --ports 2 --json >"$work/stack.json" &
stack_pid=$!
if ! read -r stack <"$work/stack.json"; then
	echo "run-stack: the stack did not start" >&2
	exit 1
fi

# One interpreter for all fields; its stderr is dropped because a Ctrl-C at
# this moment would print a KeyboardInterrupt traceback.
vars=$(printf '%s' "$stack" | "$PYTHON" -c '
import json, shlex, sys
d = json.load(sys.stdin)
for k, v in (("dir", d["dir"]), ("pg_port", d["primary"]["port"]),
             ("replica_port", d["replicas"][0]["port"]), ("redis_port", d["redis"]["port"]),
             ("levee_port", d["ports"][0]), ("http_port", d["ports"][1])):
    print(f"{k}={shlex.quote(str(v))}")
' 2>/dev/null) || { echo "run-stack: cannot read the stack description" >&2; exit 1; }
eval "$vars"

PGPASSWORD=postgres psql -X -q -v ON_ERROR_STOP=1 \
	"host=127.0.0.1 port=$pg_port dbname=postgres user=postgres" <<'EOF'
CREATE ROLE app LOGIN PASSWORD 'app';
CREATE DATABASE app OWNER app;
EOF
PGPASSWORD=app psql -X -q -v ON_ERROR_STOP=1 \
	"host=127.0.0.1 port=$pg_port dbname=app user=app" <<'EOF'
CREATE TABLE demo (id serial PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now());
INSERT INTO demo (name) VALUES ('alpha'), ('beta'), ('gamma');
CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, at timestamptz DEFAULT now());
EOF

cat >"$dir/users.txt" <<'EOF'
"app" "app"
"admin" "admin"
EOF

cat >"$dir/levee.ini" <<EOF
; Written by tools/run-stack.sh for \`make run\`; removed when it stops.
[levee]
listen = 127.0.0.1:$levee_port
http_listen = 127.0.0.1:$http_port
workers = 2
auth_file = $dir/users.txt
auth_type = md5
admin_users = admin
redis = redis://127.0.0.1:$redis_port/0
logfile =
log_level = info

[pool]
pool_mode = transaction
pool_size = 20

[routing]
health_check_user = app

[database app]
primary = 127.0.0.1:$pg_port
replicas = 127.0.0.1:$replica_port

[cache]
memory = 64MB

; Reads of demo are cached for 30 s (then served stale for up to 60 s while one refresh runs).
[cache.rule demo]
tables = demo
ttl = 30s
swr = 60s
EOF

cat <<EOF

Levee: $dir/levee.ini
  connect:   psql "host=127.0.0.1 port=$levee_port dbname=app user=app password=app"
  admin:     psql -h 127.0.0.1 -p $levee_port -U admin levee      (password: admin)
  metrics:   http://127.0.0.1:$http_port/metrics
  routing:   reads outside transactions go to the replica; try SHOW BACKENDS in the admin console
  cache:     SELECT * FROM demo is cached by the rule [cache.rule demo]; any query can opt in with
             /* levee:cache ttl=30s */ ...; then SHOW CACHE and SHOW CACHE RULES
  queue:     /* levee:async */ INSERT INTO events (kind) VALUES ('signup');  then SHOW QUEUE
  servers:   primary 127.0.0.1:$pg_port, replica 127.0.0.1:$replica_port, redis 127.0.0.1:$redis_port
             (superuser postgres, password postgres)
Ctrl-C stops Levee, then the servers.

EOF

"$BIN" -c "$dir/levee.ini" || levee_rc=$?
echo "run-stack: levee exited with status $levee_rc" >&2
exit "$levee_rc"
