#!/usr/bin/env bash
# The audit trail end to end (DESIGN.md §5, docs/audit.md), against a real
# worker on loopback (runtime unsafe-local): every answer, hit or miss, is
# one row, on disk before the reply (a worker killed -9 right after a reply
# still has it); the log rotates into sealed segments and `hpcc audit
# verify` finds every kind of tamper in the real log; the daemon keeps its
# jobs' rows; `hpcc inspect` shows them (and asks the worker for others);
# another tenant reads none of them; `hpcc reproduce` re-runs a compile and
# gets the very object plain gcc makes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/remote_lib.sh"
trap 'stop_worker; cleanup' EXIT
WORKER_CALL="$(dirname "$HPCC")/tests/unit/worker_call"

W="$WORK/worker"
mkdir -p "$W"
check "worker starts" start_worker "$W"
# Small segments, so that a few builds rotate the log several times.
printf '\n[audit]\nsegment_size = 4096\n' >>"$W/worker.ini"
stop_worker
check "worker restarts with [audit] segment_size = 4096" start_worker "$W"
issue "$W" alpha "$WORK/alpha.tok"
issue "$W" beta "$WORK/beta.tok"
LOG="$W/state/audit"
rows() { cat "$LOG"/segment-*.tsv "$LOG/current.tsv" 2>/dev/null | grep -v '^#'; }
nrows() { rows | wc -l; }
col() { cut -f"$1"; }  # columns: 1 time .. 11 action 12 cache 13 seq 14 prev
verify() { "$HPCC" audit verify "$@" >/dev/null; }

P="$(new_project p)"
mkdir -p "$P/inc"
printf '#pragma once\n#define LEVEL 1\n' >"$P/inc/cfg.h"
for i in 1 2 3; do printf '#include "cfg.h"\nint f%d(void) { return LEVEL + %d; }\n' "$i" "$i" >"$P/f$i.c"; done
# Every source is written now: a file changed within the last second of
# its compile is "modified during the compile" (uncacheable), as in ccache.
printf 'int late(void) { return 42; }\n' >"$P/late.c"
printf 'int later(void) { return 43; }\n' >"$P/later.c"
for i in 1 2 3 4; do printf 'int pad%d(void) { return %d; }\n' "$i" "$i" >"$P/pad$i.c"; done
compile() { (cd "$P" && "$HPCC" gcc -O2 -Iinc -c "f$1.c" -o "f$1.o"); }
build() { for i in 1 2 3; do compile "$i" || return 1; done; }
for i in 1 2 3; do (cd "$P" && gcc -O2 -Iinc -ffile-prefix-map="$P"=. -c "f$i.c" -o "plain$i.o"); done

# ---- rows --------------------------------------------------------------------
fresh_cache a1
use_remote alpha "$WORK/alpha.tok"
check "build through the worker" build
expect_stat remote.executed 3 "three compiles ran on the worker"
check "the live segment starts with the v2 header naming the columns" \
  grep -q "^#hpcc-audit v2	time	image_digest	source_digest	flags	output_digest	tenant	worker	vm	duration	exit	action_digest	cache	seq	prev_row_hash$" "$LOG/current.tsv"
check "three rows, all 'store', all tenant alpha, worker w1" \
  [ "$(rows | awk -F'\t' '$12 == "store" && $6 == "alpha" && $7 == "w1"' | wc -l)" = 3 ]
check "each row names the image, the source's digest and the object's digest" \
  [ "$(rows | awk -F'\t' -v img="$IMAGE" '$2 == img && $3 ~ /^sha256:[0-9a-f]+$/ && length($3) == 71 && $5 ~ /^sha256:[0-9a-f]+$/ && length($5) == 71' | wc -l)" = 3 ]
src1="sha256:$(sha256sum <"$P/f1.c" | cut -d' ' -f1)"
obj1="sha256:$(sha256sum <"$P/plain1.o" | cut -d' ' -f1)"
check "f1.c's row: its source digest, and plain gcc's object digest as output" \
  [ "$(rows | awk -F'\t' -v s="$src1" -v o="$obj1" '$3 == s && $5 == o' | wc -l)" = 1 ]
check "the flags column is the command (root-relative)" \
  [ "$(rows | col 4 | grep -c -- '^gcc -O2 -Iinc .*-c f1.c -o f1.o$')" = 1 ]
check "the daemon kept its jobs' rows, as the worker wrote them" \
  [ "$(sort "$HPCC_DIR/audit/rows.tsv")" = "$(rows | sort)" ]
check "hpcc audit verify: the worker's log is intact" verify "$LOG"

# ---- hits are rows too ------------------------------------------------------------
fresh_cache a2
before=$(nrows)
check "a fresh cache builds again" build
expect_stat remote.hit 3 "three remote hits"
check "three more rows, 'hit', with the stored rows' flags, source and output" \
  [ "$(rows | tail -n 3 | awk -F'\t' '$12 == "hit"' | col 3-5 | sort)" = "$(rows | head -n 3 | col 3-5 | sort)" ]
check "row count went up by exactly three" [ "$(nrows)" = $((before + 3)) ]

# ---- kill -9 right after a reply -----------------------------------------------
fresh_cache a3
(cd "$P" && "$HPCC" gcc -O2 -c late.c -o late.o) && kill -9 "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null
WORKER_PID=
late_src="sha256:$(sha256sum <"$P/late.c" | cut -d' ' -f1)"
check "worker killed -9 right after the reply: late.c's row is on disk" \
  [ "$(rows | awk -F'\t' -v s="$late_src" '$3 == s' | wc -l)" = 1 ]
check "worker restarts on the same log" start_worker "$W"
use_remote alpha "$WORK/alpha.tok"
fresh_cache a4
check "a compile after the restart" sh -c "cd '$P' && '$HPCC' gcc -O2 -c later.c -o later.o"
for i in 1 2 3 4; do
  (cd "$P" && "$HPCC" gcc -c "pad$i.c" -o "pad$i.o")
done
SEG1="$LOG/segment-000000000001.tsv"
check "the log rotated into sealed segments, the first from seq 1" [ -f "$SEG1" ]
check "sealed segments are read-only (0400)" [ -z "$(find "$LOG" -name 'segment-*' -perm /0377)" ]
check "seq runs 1..N without a gap across segments and the restart" \
  [ "$(rows | col 13 | tr '\n' ' ')" = "$(seq 1 "$(nrows)" | tr '\n' ' ')" ]
check "hpcc audit verify: intact across segments and the kill" verify "$LOG"

# ---- tampering with the real log ---------------------------------------------
T="$WORK/tamper"
tamper() { # SED-SCRIPT → a copy of the log with its first segment edited; prints verify's output
  rm -rf "$T" && cp -r "$LOG" "$T" && chmod u+w "$T"/* && sed -i "$1" "$T/$(basename "$SEG1")"
  "$HPCC" audit verify "$T" 2>&1
}
# Line 1 is the header; lines 2.. are rows seq 1..; the seal is last.
out=$(tamper '3s/\talpha\t/\talphb\t/'); s=$?
check "an edited row: verify fails and says edited" eval '[ $s = 1 ] && grep -qi edited <<<"$out"'
out=$(tamper '3d'); s=$?
check "a removed row: verify fails and says removed" eval '[ $s = 1 ] && grep -qi removed <<<"$out"'
out=$(tamper '3{h;d};4{G}'); s=$?
check "two rows swapped: verify fails and says reordered" eval '[ $s = 1 ] && grep -qi reorder <<<"$out"'
out=$(tamper '3{p}'); s=$?
check "a row inserted (a copy of another): verify fails and says inserted" eval '[ $s = 1 ] && grep -qi inserted <<<"$out"'
rm -rf "$T" && cp -r "$LOG" "$T" && chmod u+w "$T"/* && rm "$T/$(basename "$SEG1")"
"$HPCC" audit verify "$T" >/dev/null 2>&1; s=$?
check "a whole segment removed: verify fails" [ $s = 1 ]
check "the untouched log still verifies" verify "$LOG"

# ---- inspect ------------------------------------------------------------------
act1=$(rows | awk -F'\t' -v s="$src1" '$3 == s && $12 == "store" { print $11 }' | head -n 1)
hex1=${act1#sha256:}
fresh_cache a1   # the cache whose daemon kept the first build's rows
card=$("$HPCC" inspect --local "${hex1:0:12}")
check "inspect: a labelled card from the local rows" grep -q "^action    $act1$" <<<"$card"
check "inspect: the card names the tenant" grep -q "^tenant    alpha$" <<<"$card"
check "inspect: the card says what the cache column means" grep -q "^cache     store (compiled" <<<"$card"
check "inspect --tsv prints the row exactly as the worker wrote it" \
  [ "$("$HPCC" inspect --local --tsv "${hex1:0:12}")" = "$(rows | awk -F'\t' -v a="$act1" '$11 == a && $12 == "store"')" ]
check "inspect by the object's digest (sha256: prefix) finds the same row" \
  sh -c "'$HPCC' inspect --local --tsv '${obj1:0:20}' | grep -q '$act1'"
first=$(head -n 1 "$HPCC_DIR/audit/rows.tsv")
rowhash=$(printf '%s' "$first" | sha256sum | cut -c1-16)
check "inspect by the row's own hash (sha256 of its line)" [ "$("$HPCC" inspect --local --tsv "$rowhash")" = "$first" ]
fresh_cache empty-alpha
check "inspect with no local rows asks the worker (daemon running)" \
  sh -c "'$HPCC' daemon start >/dev/null && '$HPCC' inspect --tsv '${hex1:0:12}' | grep -q '$act1'"
check "inspect of a prefix nobody has: exit 1" sh -c "! '$HPCC' inspect 0000deadbeef 2>/dev/null"
check "inspect of a bad prefix: exit 2 and one line" \
  sh -c "'$HPCC' inspect xyz 2>'$WORK/err'; [ \$? = 2 ] && [ \$(wc -l <'$WORK/err') = 1 ]"

# ---- hostile flags: argument boundaries kept, nothing raw on the terminal ------------
fresh_cache odd
(cd "$P" && "$HPCC" gcc -O2 -Iinc '-DMSG=a b' "-DESC=$(printf '\033')[2J" -c f2.c -o odd.o)
oddrow=$(rows | tail -n 1)
check "the flags column keeps argument boundaries (shell-quoted)" grep -qF "'-DMSG=a b'" <<<"$(col 4 <<<"$oddrow")"
check "... and escapes control bytes in the file" grep -qF '\x1b[2J' <<<"$oddrow"
card=$("$HPCC" inspect --local "$(col 11 <<<"$oddrow" | cut -c8-23)")
check "the inspect card shows the escape byte escaped, not raw" eval 'grep -qF "\\x1b" <<<"$card" && ! grep -q "$(printf "\033")" <<<"$card"'

# ---- tenant B reads none of A's rows ---------------------------------------------
A="127.0.0.1:$WORKER_PORT"
out=$("$WORKER_CALL" "$A" "$WORKER_PIN" "$WORK/alpha.tok" audit "${hex1:0:12}")
check "AuditRows with alpha's token: alpha's rows" grep -q "^rows [1-9]" <<<"$out"
out=$("$WORKER_CALL" "$A" "$WORKER_PIN" "$WORK/beta.tok" audit "${hex1:0:12}")
check "AuditRows with beta's token for alpha's action: no rows" grep -qx "rows 0" <<<"$out"
out=$("$WORKER_CALL" "$A" "$WORKER_PIN" "$WORK/beta.tok" audit "${obj1#sha256:}")
check "beta asking by alpha's object digest: no rows" grep -qx "rows 0" <<<"$out"
out=$("$WORKER_CALL" "$A" "$WORKER_PIN" "$WORK/beta.tok" reproduce "$hex1")
check "Reproduce of alpha's action with beta's token: not found (5)" grep -q "^status 5:" <<<"$out"
fresh_cache beta
use_remote beta "$WORK/beta.tok"
check "hpcc inspect as tenant beta: nothing" sh -c "'$HPCC' daemon start >/dev/null; ! '$HPCC' inspect '${hex1:0:12}' 2>/dev/null"

# ---- reproduce -------------------------------------------------------------------
fresh_cache a1
use_remote alpha "$WORK/alpha.tok"
"$HPCC" daemon start >/dev/null
before=$(nrows)
out=$("$HPCC" reproduce "${hex1:0:12}"); s=$?
check "reproduce by prefix: reproducible, exit 0 ($s)" eval '[ $s = 0 ] && grep -q "^reproducible" <<<"$out"'
check "reproduce: both digests shown, equal, and equal to plain gcc's object" \
  [ "$(grep -c "$obj1" <<<"$out")" = 2 ]
check "the re-execution is one row of its own" [ "$(nrows)" = $((before + 1)) ]
check "... of the same action, 'miss' (nothing stored)" [ "$(rows | tail -n 1 | col 11-12)" = "$act1	miss" ]
line=$("$HPCC" inspect --tsv --local "${hex1:0:12}" | head -n 1)
out=$("$HPCC" reproduce "$line"); s=$?
check "reproduce by TSV line: reproducible" eval '[ $s = 0 ] && grep -q "^reproducible" <<<"$out"'
forged=$(awk -F'\t' 'BEGIN { OFS = "\t" } { $5 = "sha256:" sprintf("%064d", 0); print }' <<<"$line")
out=$("$HPCC" reproduce "$forged"); s=$?
check "a row whose recorded output differs: NOT reproducible, exit 1" eval '[ $s = 1 ] && grep -q "^NOT reproducible" <<<"$out"'
edited=$(awk -F'\t' 'BEGIN { OFS = "\t" } { $4 = $4 " -DEVIL=1"; print }' <<<"$line")
out=$("$HPCC" reproduce "$edited"); s=$?
check "a row whose flags were edited (right action digest): NOT reproducible, names the flags" \
  eval '[ $s = 1 ] && grep -q "^NOT reproducible: the row.s flags" <<<"$out"'
check "reproduce of a bad line: exit 2" sh -c "'$HPCC' reproduce 'a	b' 2>/dev/null; [ \$? = 2 ]"
check "hpcc audit verify: still intact after all of it" verify "$LOG"

[ "$T_FAILS" = 0 ]
