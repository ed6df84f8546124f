#!/bin/sh
# SPDX-License-Identifier: ISC
#
# Fetches PostgreSQL 15's own regression suite (src/test/regress of the Debian
# postgresql-15 source package) for tests/integration/test_regress.py.
#
# Debian ships the pg_regress driver but not the suite, so this script:
#   1. runs apt with a private state directory (nothing under /etc/apt or
#      /var/lib/apt is touched) whose sources are the machine's own `deb`
#      entries plus a `deb-src` twin of each, and runs `apt-get update` on it;
#   2. downloads the postgresql-15 source package (the installed version if the
#      archive still has it, else the newest 15.x it has) and unpacks only
#      src/test/regress from the upstream tarball (Debian's patches do not touch
#      that directory, so dpkg-source is not needed);
#   3. downloads, without installing, the postgresql-server-dev-15 .deb of the
#      installed version (installing it would pull in clang and llvm) and
#      compiles the suite's C module, regress.so, against its headers; the
#      suite's other modules, autoinc and refint, are the installed ones, linked
#      into the same directory because the suite loads all three from one
#      --dlpath;
#   4. when the source is not the installed version, downloads (again without
#      installing) the postgresql-client-15 .deb of the source's version for its
#      psql, whose behaviour the suite's expected output was written for.
#
# The result is $LEVEE_PG_REGRESS_DIR (default build/pg-regress)/suite with
# sql/, expected/, data/, parallel_schedule, resultmap, lib/ (for --dlpath),
# bin/psql (for --bindir) and VERSION (the source version, then the server
# version). It is made once: a complete cache (one with the stamp file of this
# script's layout) is reused without any network access.
#
# Usage: tools/fetch-pg-regress.sh
# Exit 0: prints the suite's directory on stdout.
# Exit 2: prints why the suite cannot be had (no deb-src reachable, no
#         compiler, ...) on stdout; apt's own output goes to stderr.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${LEVEE_PG_REGRESS_DIR:-$REPO/build/pg-regress}
SUITE=$CACHE/suite
# Names the layout; a cache made by an older layout of this script is made again.
STAMP=$SUITE/.complete-2
PKG=postgresql-15
DEVPKG=postgresql-server-dev-15
CLIENTPKG=postgresql-client-15
PKGLIBDIR=/usr/lib/postgresql/15/lib
PGBINDIR=/usr/lib/postgresql/15/bin

# Prints the first existing path among its arguments (an expanded glob).
first() {
	for f in "$@"; do
		[ -e "$f" ] && echo "$f" && return 0
	done
	return 0
}
say() { echo "fetch-pg-regress: $*" >&2; }
fail() {
	echo "fetch-pg-regress: cannot get the regression suite: $*"
	exit 2
}

if [ -f "$STAMP" ]; then
	echo "$SUITE"
	exit 0
fi

for tool in apt-get apt-cache dpkg-query dpkg-deb tar bzip2 xz cc flock; do
	command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
[ -d "$PKGLIBDIR" ] || fail "$PKGLIBDIR does not exist ($PKG is not installed)"
SERVER_VERSION=$(dpkg-query -W -f='${Version}' "$PKG" 2>/dev/null) ||
	fail "$PKG is not installed"

mkdir -p "$CACHE"
# One fetch at a time; a second caller waits and then finds the cache made.
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$STAMP" ]; then
	echo "$SUITE"
	exit 0
fi

WORK=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM HUP
APTDIR=$WORK/apt
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/parts"

# The private sources: every enabled deb entry of the machine, as deb and deb-src.
n=0
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	sed 's/^\([Tt]ypes:\).*$/\1 deb deb-src/' "$f" >"$APTDIR/parts/$n.sources"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	sed -n 's/^[[:space:]]*deb[[:space:]]\(.*\)$/deb \1\ndeb-src \1/p' "$f" \
		>"$APTDIR/parts/$n.list"
done
[ "$n" -gt 0 ] || fail "no apt sources are configured"

set -- -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APTDIR/parts" \
	-o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" \
	-o "APT::Get::Show-Versions=0"
[ "$(id -u)" = 0 ] && set -- "$@" -o "APT::Sandbox::User=root"

say "apt-get update (private lists in $APTDIR)"
# Some source may lack a deb-src index; apt then exits non-zero but keeps the others.
apt-get "$@" -q update >"$WORK/update.out" 2>&1 || say "apt-get update reported errors"
cat "$WORK/update.out" >&2
LISTED=$(apt-cache "$@" showsrc "$PKG" 2>/dev/null | sed -n 's/^Version: //p' | sort -Vr)
if [ -z "$LISTED" ]; then
	fail "apt lists no source package $PKG: no deb-src index was reachable" \
		"($(grep -E '^(E:|W: Failed)' "$WORK/update.out" | head -n 2 | tr '\n' ' '))"
fi

# The installed version first, then every other version the archive lists, newest first.
VERSIONS=$( (echo "$LISTED" | grep -Fx "$SERVER_VERSION"; echo "$LISTED") | awk '!seen[$0]++')
mkdir -p "$WORK/src"
SOURCE_VERSION=
: >"$WORK/errors"
for v in $VERSIONS; do
	say "apt-get source --download-only $PKG=$v"
	if (cd "$WORK/src" && apt-get "$@" -q source --download-only "$PKG=$v") \
		>"$WORK/out" 2>&1; then
		cat "$WORK/out" >&2
		SOURCE_VERSION=$v
		break
	fi
	cat "$WORK/out" >&2
	grep '^E:' "$WORK/out" | head -n 1 >>"$WORK/errors" || true
	rm -f "$WORK/src"/*
done
[ -n "$SOURCE_VERSION" ] ||
	fail "no version of $PKG could be downloaded: $(tr '\n' ' ' <"$WORK/errors")"

ORIG=$(first "$WORK/src"/*.orig.tar.*)
[ -n "$ORIG" ] || fail "the source package $PKG=$SOURCE_VERSION has no .orig tarball"
TOP=$(tar tf "$ORIG" | head -n 1 | cut -d/ -f1)
say "unpacking $TOP/src/test/regress from $(basename "$ORIG")"
tar xf "$ORIG" --no-same-owner --no-same-permissions -C "$WORK/src" \
	"$TOP/src/test/regress" ||
	fail "could not unpack src/test/regress from $ORIG"
REG=$WORK/src/$TOP/src/test/regress

NEW=$WORK/suite
mkdir -p "$NEW/lib"
for item in sql expected input output data parallel_schedule serial_schedule resultmap \
	regress.c; do
	[ -e "$REG/$item" ] && cp -a "$REG/$item" "$NEW/"
done
for item in sql expected data parallel_schedule regress.c; do
	[ -e "$NEW/$item" ] || fail "$ORIG has no src/test/regress/$item"
done

# Server headers for regress.so: the installed version's, else any 15.x.
DEVVERSIONS=$( (echo "$SERVER_VERSION"
	apt-cache "$@" madison "$DEVPKG" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' |
	sort -Vr) | awk '!seen[$0]++')
mkdir -p "$WORK/deb"
DEB=
for v in $DEVVERSIONS; do
	say "apt-get download $DEVPKG=$v"
	if (cd "$WORK/deb" && apt-get "$@" -q download "$DEVPKG=$v") >&2; then
		DEB=$(first "$WORK/deb"/*.deb)
		break
	fi
done
[ -n "$DEB" ] || fail "could not download $DEVPKG (needed for regress.so's headers)"
dpkg-deb -x "$DEB" "$WORK/dev"
INC=$WORK/dev/usr/include/postgresql/15/server
[ -f "$INC/postgres.h" ] || fail "$(basename "$DEB") has no server headers"
say "compiling regress.so"
cc -O2 -fPIC -shared -I"$INC" -o "$NEW/lib/regress.so" "$NEW/regress.c" >&2 ||
	fail "regress.c did not compile against $(basename "$DEB")"
for mod in autoinc refint; do
	[ -f "$PKGLIBDIR/$mod.so" ] || fail "$PKGLIBDIR/$mod.so is missing"
	ln -s "$PKGLIBDIR/$mod.so" "$NEW/lib/$mod.so"
done

# psql of the suite's own version: a minor release may change psql in ways the
# suite's expected output depends on (15.19 began skipping the in-line data of a
# COPY ... FROM STDIN that fails at once, and 15.19's scripts gained \. lines for
# it). pg_regress is told --bindir=suite/bin.
mkdir -p "$NEW/bin"
if [ "$SOURCE_VERSION" = "$SERVER_VERSION" ]; then
	ln -s "$PGBINDIR/psql" "$NEW/bin/psql"
else
	say "apt-get download $CLIENTPKG=$SOURCE_VERSION"
	mkdir -p "$WORK/client"
	(cd "$WORK/client" && apt-get "$@" -q download "$CLIENTPKG=$SOURCE_VERSION") >&2 ||
		fail "could not download $CLIENTPKG=$SOURCE_VERSION (psql of the suite's version)"
	dpkg-deb -x "$(first "$WORK/client"/*.deb)" "$WORK/client/x"
	cp "$WORK/client/x/usr/lib/postgresql/15/bin/psql" "$NEW/bin/psql" ||
		fail "$CLIENTPKG=$SOURCE_VERSION has no psql"
	"$NEW/bin/psql" --version >/dev/null ||
		fail "psql of $CLIENTPKG=$SOURCE_VERSION does not run here"
fi

printf '%s\n%s\n' "$SOURCE_VERSION" "$SERVER_VERSION" >"$NEW/VERSION"
# The server reads data/ and lib/ as its own OS user.
chmod -R a+rX,go-w "$NEW"
rm -rf "$SUITE"
mv "$NEW" "$SUITE"
touch "$STAMP"
say "suite of $PKG $SOURCE_VERSION ready for server $SERVER_VERSION"
echo "$SUITE"
