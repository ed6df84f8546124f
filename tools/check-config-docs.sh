#!/bin/sh
# Checks the settings tables of src/config/ against the documentation:
#
#  - every row of config_keys.c (LV_KEY, LV_KEY_MS, LV_KEY_PCT), config_dbs.c
#    (LV_DBKEY, LV_USERKEY) and config_rules.c (LV_CRULEKEY, LV_CRULEKEY_MS,
#    LV_CRULEKEY_PCT, LV_QRULEKEY) has a "### key" heading under its "## [section]" heading in
#    docs/config.md, whose text holds "**Default:** `<default>`" (any default
#    text when the table's is empty), "**Reloadable:** yes|no" as the row's
#    LV_CF_RELOAD flag says, and the row's doc sentence word for word;
#  - every row appears as "key =" (possibly commented out with ';' or '#') under
#    its section in etc/levee.ini (a commented-out "[user NAME]" or
#    "[cache.rule NAME]" header counts);
#  - docs/config.md documents no key that the tables do not have.
#
# Rows are read as text, so each row must start with its macro on its own line
# and end with "),"; quoted strings in a row must not contain '"'.
# Prints one line per problem and exits 1 if there is any. Run by
# `make check-config-docs`.
set -eu
cd "$(dirname "$0")/.."

KEYS=src/config/config_keys.c
DBS=src/config/config_dbs.c
RULES=src/config/config_rules.c
DOC=docs/config.md
INI=etc/levee.ini

for f in "$KEYS" "$DBS" "$RULES" "$DOC" "$INI"; do
	[ -r "$f" ] || { echo "check-config-docs: cannot read $f"; exit 1; }
done

rows=$(mktemp)
trap 'rm -f "$rows"' EXIT INT TERM

# One line per row: section, key, default, reloadable (yes/no), doc; tab-separated.
awk '
function emit(row,    macro, rest, q, n, args, i, nargs, sect, key, def, flags, doc) {
	match(row, /LV_[A-Z_]+\(/)
	macro = substr(row, RSTART, RLENGTH - 1)
	rest = substr(row, RSTART + RLENGTH)
	sub(/\),[ \t]*$/, "", rest)
	# Take the quoted strings out, so the commas inside them do not split arguments.
	n = 0
	while (match(rest, /"[^"]*"/)) {
		q[++n] = substr(rest, RSTART + 1, RLENGTH - 2)
		rest = substr(rest, 1, RSTART - 1) "@Q" n "@" substr(rest, RSTART + RLENGTH)
	}
	nargs = split(rest, args, ",")
	for (i = 1; i <= nargs; i++) {
		gsub(/^[ \t]+|[ \t]+$/, "", args[i])
		if (args[i] ~ /^@Q[0-9]+@$/) {
			args[i] = q[substr(args[i], 3, length(args[i]) - 3) + 0]
		}
	}
	if (macro == "LV_KEY") {
		sect = args[1]; key = args[2]; def = args[4]; flags = args[7]; doc = args[8]
	} else if (macro == "LV_KEY_MS" || macro == "LV_KEY_PCT") {
		sect = args[1]; key = args[2]; def = args[3]; flags = args[6]; doc = args[7]
	} else if (macro == "LV_DBKEY" || macro == "LV_USERKEY") {
		sect = macro == "LV_DBKEY" ? "database" : "user"
		key = args[1]; def = args[3]; flags = args[6]; doc = args[7]
	} else if (macro == "LV_CRULEKEY" || macro == "LV_QRULEKEY") {
		sect = macro == "LV_CRULEKEY" ? "cache.rule" : "queue.rule"
		key = args[1]; def = args[3]; flags = args[6]; doc = args[7]
	} else if (macro == "LV_CRULEKEY_MS" || macro == "LV_CRULEKEY_PCT") {
		sect = "cache.rule"
		key = args[1]; def = args[2]; flags = args[5]; doc = args[6]
	} else {
		printf "%s:%d: unknown row macro %s\n", FILENAME, FNR, macro > "/dev/stderr"
		exit 2
	}
	printf "%s\t%s\t%s\t%s\t%s\n", sect, key, def, (flags ~ /RELOAD/ ? "yes" : "no"), doc
}
/^[ \t]*LV_(KEY|KEY_MS|KEY_PCT|DBKEY|USERKEY|CRULEKEY|CRULEKEY_MS|CRULEKEY_PCT|QRULEKEY)\(/ {
	row = $0; inrow = 1
}
inrow && row != $0 { row = row " " $0 }
inrow && /\),[ \t]*$/ { emit(row); inrow = 0 }
' "$KEYS" "$DBS" "$RULES" >"$rows"

if [ ! -s "$rows" ]; then
	echo "check-config-docs: found no settings rows in $KEYS, $DBS and $RULES"
	exit 1
fi

awk -v DOC="$DOC" -v INI="$INI" '
BEGIN { FS = "\t" }
FILENAME != DOC && FILENAME != INI {
	n++; sect[n] = $1; key[n] = $2; def[n] = $3; rel[n] = $4; doc[n] = $5
	known[$1 "/" $2] = 1
	next
}
FILENAME == DOC {
	if ($0 ~ /^## /) {
		dsect = ""
		if (match($0, /^## \[[a-z.]+/))
			dsect = substr($0, 5, RLENGTH - 4)
		dkey = ""
		next
	}
	if ($0 ~ /^### /) {
		dkey = substr($0, 5)
		gsub(/[ \t`]/, "", dkey)
		id = dsect "/" dkey
		if (dsect != "" && !(id in block)) {
			block[id] = ""
			bline[id] = FNR
		}
		next
	}
	if ($0 ~ /^#/) { dkey = ""; next }
	if (dsect != "" && dkey != "")
		block[dsect "/" dkey] = block[dsect "/" dkey] " " $0
	next
}
FILENAME == INI {
	line = $0
	sub(/^[;#][ \t]*/, "", line)
	if (match(line, /^\[[a-z.]+/)) {
		isect = substr(line, 2, RLENGTH - 1)
		next
	}
	if (match(line, /^[a-z_0-9]+[ \t]*=/)) {
		k = substr(line, 1, RLENGTH - 1)
		gsub(/[ \t]/, "", k)
		inini[isect "/" k] = 1
	}
	next
}
END {
	bad = 0
	named["database"] = named["user"] = named["cache.rule"] = named["queue.rule"] = 1
	for (i = 1; i <= n; i++) {
		id = sect[i] "/" key[i]
		sfx = sect[i] in named ? " NAME" : ""
		label = "[" sect[i] sfx "] " key[i]
		if (!(id in block)) {
			printf "%s: %s is not documented (no \"### %s\" under \"## [%s%s]\")\n", DOC, label, key[i], sect[i], sfx
			bad++
		} else {
			text = block[id]
			gsub(/[ \t]+/, " ", text)
			want = def[i] == "" ? "**Default:**" : "**Default:** `" def[i] "`"
			if (index(text, want) == 0) {
				printf "%s:%d: %s: expected \"%s\"\n", DOC, bline[id], label, want
				bad++
			}
			want = "**Reloadable:** " rel[i]
			if (index(text, want) == 0) {
				printf "%s:%d: %s: expected \"%s\"\n", DOC, bline[id], label, want
				bad++
			}
			if (index(text, doc[i]) == 0) {
				printf "%s:%d: %s: expected the table sentence \"%s\"\n", DOC, bline[id], label, doc[i]
				bad++
			}
		}
		if (!(id in inini)) {
			printf "%s: %s is missing (add \"%s = ...\", commented out if need be, under [%s])\n", INI, label, key[i], sect[i]
			bad++
		}
	}
	for (id in block) {
		if (!(id in known)) {
			printf "%s:%d: documents \"%s\", which is not in the settings tables\n", DOC, bline[id], id
			bad++
		}
	}
	if (bad) {
		printf "check-config-docs: %d problem(s)\n", bad
		exit 1
	}
	printf "check-config-docs: %d settings documented\n", n
}
' "$rows" "$DOC" "$INI"
