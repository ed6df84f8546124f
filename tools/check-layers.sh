#!/bin/sh
# Enforces the layering of STYLE.md 1.2 and DESIGN.md: a file under src/<dir>/
# may include only headers of the layers its row below allows, and each
# third-party library is included only by the module that wraps it.
#
#   tools/check-layers.sh [SRC_DIR]      (default: src; run by make check-layers)
#
# On failure it prints one "file:line: message: #include ..." line per
# offence and exits 1; on success it prints "check-layers: N files ok".
# Includes without a directory ("foo.h") are resolved as the compiler does:
# next to the including file first, so they count as the file's own layer.
set -eu

SRC=${1:-src}

# Layer -> layers it may include from (itself included). "main" is src/main.c.
ALLOW='
core:    core
config:  core config
event:   core config event
net:     core config event net
wire:    core wire
sql:     core sql
redis:   core config event redis
cache:   core config wire sql redis cache
wq:      core event config wire sql redis wq
proxy:   core config event net wire sql redis cache wq proxy
admin:   core config event net wire sql redis cache wq proxy admin
main:    core config event net wire sql redis cache wq proxy admin
'

# Third-party headers -> files allowed to include them. Patterns are matched
# against the header name (shell case patterns); the allowed list holds path
# prefixes relative to SRC: "net/" allows the whole directory, "sql/classify.c"
# one file. Rows are checked in order and the first matching header wins.
# libcrypto headers (openssl/evp.h, openssl/rand.h, ...) are not restricted:
# wire/scram.c hashes with them and proxy/ draws cancel keys from them; only
# the TLS layer (openssl/ssl.h) is reserved to net/.
THIRD_PARTY='
pg_query.h|*/pg_query.h                 sql/classify.c
hiredis/*|hiredis.h|adapters/*         redis/
openssl/ssl.h|openssl/tls1.h            net/
cjson/*|cJSON.h|cJSON_Utils.h           wq/ admin/
ini.h                                   config/
'

[ -d "$SRC" ] || { echo "check-layers: no directory $SRC" >&2; exit 2; }

LAYERS=$(printf '%s\n' "$ALLOW" | awk -F: 'NF > 1 && $1 != "main" { printf "%s ", $1 }')
files=$(find "$SRC" -type f \( -name '*.c' -o -name '*.h' \) | sort)
n=0
fail=0
errs=$(mktemp)
trap 'rm -f "$errs"' EXIT

allowed_layers() {
	printf '%s\n' "$ALLOW" | awk -v l="$1:" '$1 == l { $1 = ""; print; exit }'
}

for f in $files; do
	n=$((n + 1))
	rel=${f#"$SRC"/}
	case $rel in
	*/*) layer=${rel%%/*} ;;
	main.c) layer=main ;;
	*)
		echo "$f:1: file outside any layer directory" >>"$errs"
		continue
		;;
	esac
	allow=$(allowed_layers "$layer")
	if [ -z "$allow" ]; then
		echo "$f:1: unknown layer \"$layer\" (add it to ALLOW in tools/check-layers.sh)" >>"$errs"
		continue
	fi
	# Every #include line: line number, the delimiter and the header name.
	grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' "$f" |
		sed -E 's/^([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^>"]*)[>"].*/\1 \2 \3/' |
		while read -r line delim hdr; do
			# Third-party rules apply to both include forms.
			printf '%s\n' "$THIRD_PARTY" | while read -r pats where; do
				[ -n "$pats" ] || continue
				matched=0
				oldifs=$IFS
				IFS='|'
				for p in $pats; do
					# shellcheck disable=SC2254
					case $hdr in $p) matched=1 ;; esac
				done
				IFS=$oldifs
				[ "$matched" = 1 ] || continue
				ok=0
				for w in $where; do
					case $rel in "$w"*) ok=1 ;; esac
				done
				if [ "$ok" = 0 ]; then
					close='>'
					[ "$delim" = '"' ] && close='"'
					echo "$f:$line: $hdr is reserved for $where: #include $delim$hdr$close" >>"$errs"
				fi
				break
			done
			[ "$delim" = '"' ] || continue
			case $hdr in
			*/*) inc=${hdr%%/*} ;;
			*) continue ;; # same directory as the including file
			esac
			# A directory that is no layer ("cjson/...") is a library header.
			case " $LAYERS .. " in
			*" $inc "*) ;;
			*) continue ;;
			esac
			ok=0
			for a in $allow; do
				[ "$a" = "$inc" ] && ok=1
			done
			if [ "$ok" = 0 ]; then
				echo "$f:$line: layer $layer may not include from $inc/: #include \"$hdr\"" >>"$errs"
			fi
		done
done

if [ -s "$errs" ]; then
	cat "$errs"
	echo "check-layers: $(wc -l <"$errs") problem(s) in $n files"
	exit 1
fi
echo "check-layers: $n files ok"
