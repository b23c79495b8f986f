#!/usr/bin/env bash
# hpcc audit verify, the command line (docs/audit.md): a log written here by
# python3 (hashlib computes the chain, independently of hpcc's C code) in
# the worker's layout — two sealed segments and current.tsv — verifies as
# intact with the last row's hash; each kind of tamper made with sed exits
# 1 and names its kind, file, line and seq (a forged row before or after the
# real one, a replayed row, adjacent edited rows: each row named, nothing
# else); a single segment verifies with
# a note; a v1 file verifies as v1; an overlong line is reported, not
# crashed on; usage mistakes and unreadable input exit 2.
. "$(dirname "$0")/lib.sh"

D="$WORK/log"
mkdir -p "$D"
python3 - "$D" <<'PY'
import hashlib, os, sys
d = sys.argv[1]
cols = ["time", "image_digest", "source_digest", "flags", "output_digest", "tenant", "worker", "vm",
        "duration", "exit", "action_digest", "cache", "seq", "prev_row_hash"]
header = "#hpcc-audit v2\t" + "\t".join(cols)
prev = "0" * 64
rows = []
for seq in range(1, 26):
    r = ["2026-12-05T06:%02d:00.000000Z" % seq, "sha256:" + "1" * 64, "sha256:" + "2" * 64,
         "gcc -c a\\tb.c -o a.o", "sha256:%064x" % (0xb000 + seq), "alpha" if seq % 2 else "beta", "w1",
         "unsafe-local", str(seq * 10), "0", "sha256:%064x" % (0xa000 + seq), "store", str(seq), prev]
    line = "\t".join(r)
    rows.append(line)
    prev = hashlib.sha256(line.encode()).hexdigest()
def write(name, lo, hi, seal):
    with open(os.path.join(d, name), "w") as f:
        f.write(header + "\n")
        for line in rows[lo:hi]:
            f.write(line + "\n")
        if seal:
            last = hashlib.sha256(rows[hi - 1].encode()).hexdigest()
            f.write("#sealed\trows=%d\tfirst_seq=%d\tlast_seq=%d\tlast_hash=%s\n" % (hi - lo, lo + 1, hi, last))
write("segment-000000000001.tsv", 0, 10, True)
write("segment-000000000011.tsv", 10, 20, True)
write("current.tsv", 20, 25, False)
with open(os.path.join(d, "last_hash"), "w") as f:
    f.write(prev + "\n")
# A forged row 23: its prev is row 22's hash, so it links; only row 23 betrays it.
forged = rows[22].split("\t")
forged[4] = "sha256:" + "e" * 64
forged[13] = hashlib.sha256(rows[21].encode()).hexdigest()
with open(os.path.join(d, "forged"), "w") as f:
    f.write("\t".join(forged) + "\n")
# The same log in v1 (13 columns, no seq, no header).
prev = "0" * 64
with open(os.path.join(os.path.dirname(d), "audit.tsv"), "w") as f:
    for seq in range(1, 6):
        r = rows[seq - 1].split("\t")[:12] + [prev]
        line = "\t".join(r)
        f.write(line + "\n")
        prev = hashlib.sha256(line.encode()).hexdigest()
PY
LAST=$(cat "$D/last_hash"); FORGED=$(cat "$D/forged"); rm "$D/last_hash" "$D/forged"

out=$("$HPCC" audit verify "$D" 2>&1); s=$?
check "an intact log: exit 0" [ $s = 0 ]
check "an intact log: rows, seqs, files and the last hash" \
  [ "$out" = "hpcc audit verify: OK: 25 rows (seq 1..25) in 3 files, chain intact; last row hash $LAST" ]
out=$("$HPCC" audit verify "$WORK" 2>&1); s=$?
check "the worker dir (holding audit/) is not the log: nothing there, exit 2" [ $s = 2 ]

T="$WORK/t"
# tamper FILE SED-SCRIPT → verify's output for a copy of the log with FILE edited; status in $s
tamper() {
  rm -rf "$T" && cp -r "$D" "$T" && sed -i "$2" "$T/$1"
  out=$("$HPCC" audit verify "$T" 2>&1); s=$?
}
expect() { # description pattern
  if [ $s = 1 ] && grep -q -- "$2" <<<"$out"; then ok "$1"; else not_ok "$1: status $s, output: $out"; fi
}
# current.tsv: line 1 is the header, lines 2..6 are seq 21..25.
tamper current.tsv '3s/\tbeta\t/\tbetb\t/'
expect "an edited row" "edited: row at $T/current.tsv:3 (seq 22) was edited"
tamper current.tsv '3s/\t220\t/\t221\t/'
expect "an edited duration" "edited: row at $T/current.tsv:3 (seq 22)"
tamper current.tsv '4d'
expect "a removed row" "removed: 1 row(s) removed before $T/current.tsv:4 (seq 23..23 missing)"
tamper current.tsv '2d'
expect "the first row of current.tsv removed" \
  "removed: seq 21..21 missing before $T/current.tsv:2: a sealed segment, or the first rows of this file, were removed"
rm -rf "$T" && cp -r "$D" "$T"
F="$FORGED" awk 'NR == 3 { print; print ENVIRON["F"]; next } 1' "$D/current.tsv" >"$T/current.tsv"
out=$("$HPCC" audit verify "$T" 2>&1); s=$?
expect "a forged row with the right prev, before the real one" "inserted: row at $T/current.tsv:4 (seq 23) was inserted"
expect "a forged row before the real one: one problem" "TAMPERED: 1 problem in"
# The same row after the real one: the row after both chains after the
# real one, so the forged one is named, and nothing else.
rm -rf "$T" && cp -r "$D" "$T"
F="$FORGED" awk 'NR == 4 { print; print ENVIRON["F"]; next } 1' "$D/current.tsv" >"$T/current.tsv"
out=$("$HPCC" audit verify "$T" 2>&1); s=$?
expect "a forged row with the right prev, after the real one" "inserted: row at $T/current.tsv:5 (seq 23) was inserted"
expect "a forged row after the real one: one problem" "TAMPERED: 1 problem in"
# A replayed row: an earlier line appended again, later or right after itself.
tamper current.tsv '3h;$G'
expect "a replayed row" "inserted: row at $T/current.tsv:7 (seq 22) was inserted: a copy of the row at $T/current.tsv:3"
expect "a replayed row: one problem" "TAMPERED: 1 problem in"
tamper current.tsv '3p'
expect "a row repeated at once" "inserted: row at $T/current.tsv:4 (seq 22) was inserted: a copy of the row at $T/current.tsv:3"
expect "a row repeated at once: one problem" "TAMPERED: 1 problem in"
# Adjacent edited rows: each one is named.
tamper current.tsv '3s/\tbeta\t/\tbetb\t/;4s/\talpha\t/\talphb\t/'
expect "two adjacent rows edited: the first" "edited: row at $T/current.tsv:3 (seq 22) was edited"
expect "two adjacent rows edited: the second" "edited: row at $T/current.tsv:4 (seq 23) was edited"
expect "two adjacent rows edited: two problems" "TAMPERED: 2 problems in"
tamper current.tsv '3s/\tbeta\t/\tbetb\t/;4s/\talpha\t/\talphb\t/;5s/\tbeta\t/\tbetb\t/'
expect "three adjacent rows edited: the first" "edited: row at $T/current.tsv:3 (seq 22) was edited"
expect "three adjacent rows edited: the second" "edited: row at $T/current.tsv:4 (seq 23) was edited"
expect "three adjacent rows edited: the third" "edited: row at $T/current.tsv:5 (seq 24) was edited"
expect "three adjacent rows edited: three problems" "TAMPERED: 3 problems in"
tamper current.tsv '3{h;d};4{G}'
expect "two rows swapped" "reordered: rows reordered: seq 23 at $T/current.tsv:3 chains after line 4"
tamper current.tsv '3s/\t22\t/\t99\t/'
expect "an edited seq" "edited: row at $T/current.tsv:3 (seq 99)"
tamper current.tsv '3s/sha256:1111/sha256:zzzz/'
expect "a row that no longer parses" "invalid: $T/current.tsv:3 is not a valid row (edited?): image_digest"
tamper segment-000000000001.tsv '$s/rows=10/rows=11/'
expect "a tampered seal" "seal: the seal at $T/segment-000000000001.tsv:12 does not match"
tamper segment-000000000001.tsv '10,$d'
expect "a sealed segment cut short" "has no seal line"
tamper segment-000000000011.tsv '$a\
#extra'
expect "a line after a seal" "after-seal: 1 line(s) after the seal line"
rm -rf "$T" && cp -r "$D" "$T" && rm "$T/segment-000000000011.tsv"
out=$("$HPCC" audit verify "$T" 2>&1); s=$?
expect "a sealed segment removed (before current.tsv)" "removed: seq 11..20 missing before $T/current.tsv:2: a sealed segment"
rm -rf "$T" && cp -r "$D" "$T" && rm "$T/segment-000000000011.tsv" && mv "$T/current.tsv" "$T/segment-000000000021.tsv"
out=$("$HPCC" audit verify "$T" 2>&1); s=$?
expect "a sealed segment removed (before another)" \
  "segment-missing: seq 11..20 missing before $T/segment-000000000021.tsv: a sealed segment was removed"
rm -rf "$T" && cp -r "$D" "$T" && rm "$T/segment-000000000001.tsv"
out=$("$HPCC" audit verify "$T" 2>&1); s=$?
expect "the first segment removed" "the log's first segment(s) were removed"
rm -rf "$T" && cp -r "$D" "$T" && python3 -c "import sys; open(sys.argv[1], 'a').write('x' * 2000000 + '\n')" "$T/current.tsv"
out=$("$HPCC" audit verify "$T" 2>&1); s=$?
expect "an overlong line" "current.tsv:7 is not a valid row (edited?): longer than"
out=$("$HPCC" audit verify "$T/current.tsv" 2>&1); s=$?
expect "an overlong line, verifying the file alone" "is not a valid row"

# Single files.
out=$("$HPCC" audit verify "$D/segment-000000000011.tsv" 2>&1); s=$?
check "one segment alone: exit 0" [ $s = 0 ]
check "one segment alone: a note on where it starts" grep -q "note: starts at seq 11: earlier rows are not in what was given" <<<"$out"
out=$("$HPCC" audit verify "$WORK/audit.tsv" 2>&1); s=$?
check "a v1 file: exit 0, verified as v1" eval '[ $s = 0 ] && grep -q "OK: 5 rows (v1: no seq) in 1 file" <<<"$out"'
sed -i '2s/\tbeta\t/\tbetb\t/' "$WORK/audit.tsv"
out=$("$HPCC" audit verify "$WORK/audit.tsv" 2>&1); s=$?
expect "a v1 file edited: a chain break" "break: the chain breaks at $WORK/audit.tsv:3"

# Usage and unreadable input.
"$HPCC" audit >/dev/null 2>&1; s=$?
check "hpcc audit without a subcommand: exit 2" [ $s = 2 ]
"$HPCC" audit verify >/dev/null 2>&1; s=$?
check "hpcc audit verify without a path: exit 2" [ $s = 2 ]
"$HPCC" audit check "$D" >/dev/null 2>&1; s=$?
check "an unknown subcommand: exit 2" [ $s = 2 ]
err=$("$HPCC" audit verify "$WORK/nonexistent" 2>&1 >/dev/null); s=$?
check "a missing path: exit 2 and one line" eval '[ $s = 2 ] && [ $(wc -l <<<"$err") = 1 ]'
exit 0
