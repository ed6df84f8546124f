#!/bin/sh
# Formats Levee's C sources with the pinned clang-format and .clang-format.
#
#   tools/format.sh check [FILE...]   report files that differ; exit 1 if any
#   tools/format.sh fix [FILE...]     rewrite files in place
#
# Without FILEs it covers every .c and .h under src/ and tests/unit/. The
# pinned version is clang-format 14 (Debian 12); another major version may
# format differently, so the script refuses it unless CLANG_FORMAT names a
# binary explicitly. Not part of `make check` yet: files are formatted when
# their owners are ready, with `tools/format.sh fix path/to/file.c`.
set -eu

PIN=14
cd "$(dirname "$0")/.."

if [ -n "${CLANG_FORMAT:-}" ]; then
	cf=$CLANG_FORMAT
elif command -v clang-format-$PIN >/dev/null 2>&1; then
	cf=clang-format-$PIN
elif command -v clang-format >/dev/null 2>&1 &&
	clang-format --version | grep -q "version $PIN\."; then
	cf=clang-format
else
	echo "format: clang-format $PIN not found (apt-get install clang-format-$PIN)," \
		"or set CLANG_FORMAT" >&2
	exit 2
fi

mode=${1:-}
[ $# -gt 0 ] && shift
case $mode in
check | fix) ;;
*)
	echo "usage: tools/format.sh check|fix [FILE...]" >&2
	exit 2
	;;
esac

if [ $# -eq 0 ]; then
	set -- $(find src tests/unit -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null | sort)
fi
[ $# -gt 0 ] || { echo "format: no files"; exit 0; }

if [ "$mode" = fix ]; then
	"$cf" --style=file -i "$@"
	echo "format: $# files formatted"
	exit 0
fi

bad=0
for f in "$@"; do
	if ! "$cf" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
		echo "format: $f needs formatting (tools/format.sh fix $f)"
		bad=$((bad + 1))
	fi
done
if [ "$bad" -gt 0 ]; then
	echo "format: $bad of $# files need formatting"
	exit 1
fi
echo "format: $# files ok"
