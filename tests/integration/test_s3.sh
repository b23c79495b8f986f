#!/usr/bin/env bash
# The shared S3 tier (issue 6) against a real S3 server on loopback: s3rver
# behind the harness's SigV4 check (tests/s3/s3.js; a wrong secret gets 403),
# the real scheduler with a paranoid tenant (acme) and a trusted one
# (globex), each with its own test IdP, and workers with an [s3] section.
# Checks: two workers share results through S3 (the second hits what the
# first compiled, with an empty disk); a corrupted object is never served
# (deleted, compiled again); S3 stopped in the middle of a build and then
# down: builds pass; tenant globex reads none of acme's objects through
# Probe or FindMissing, and S3 keys are per tenant; a paranoid tenant's
# daemon, given valid S3 credentials, sends S3 nothing; a trusted tenant's
# daemon reads and writes S3 itself; `hpcc worker gc` budgets.
. "$(dirname "$0")/lib.sh"
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
WORKER_CALL="$(dirname "$HPCC")/tests/unit/worker_call"
IMAGE=$("$(dirname "$HPCC")/hpccd" worker host-image)
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; PIDS=(); }
trap 'stop_all; cleanup' EXIT
HB_MS=300


# ---- the S3 server ------------------------------------------------------------
S3_MODULES=$("$SRCDIR/scripts/npm-deps.sh" "$SRCDIR/tests/s3" 2>"$WORK/npm-s3.log") ||
  { cat "$WORK/npm-s3.log"; not_ok "npm modules of the test S3 server"; exit 1; }
start_s3() {
  rm -f "$WORK/s3.port.new"
  NODE_PATH=$S3_MODULES node "$SRCDIR/tests/s3/s3.js" --port "${1:-0}" --port-file "$WORK/s3.port.new" \
    --dir "$WORK/s3data" --bucket hpcc --access-key AKWORKER --secret-key worker-secret \
    --access-key AKCLIENT --secret-key client-secret >>"$WORK/s3.log" 2>&1 &
  S3_PID=$!
  PIDS+=($!)
  wait_file "$WORK/s3.port.new" && mv "$WORK/s3.port.new" "$WORK/s3.port"
}
check "the S3 server (s3rver behind a SigV4 check) starts" start_s3
S3_PORT=$(cat "$WORK/s3.port")
S3=http://127.0.0.1:$S3_PORT
s3stat() { # a path into /__test/stats, like by_key.AKCLIENT.PUT → a number (0 when absent)
  curl -sf "$S3/__test/stats" | node -e '
    let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => {
      let v = JSON.parse(s); for (const k of process.argv[1].split(".")) v = v == null ? undefined : v[k];
      console.log(typeof v === "number" ? v : 0); });' "$1"
}
s3curl() { # AK SK PATH → the body; status in S3_STATUS (a file per process: callers run in parallel)
  local out="$WORK/s3curl.$BASHPID.out"
  S3_STATUS=$(curl -s -o "$out" -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$1:$2" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$S3$3")
  cat "$out"
  rm -f "$out"
}
s3keys() { # PREFIX → the keys under it, one per line (the worker's credentials)
  s3curl AKWORKER worker-secret "/hpcc?list-type=2&prefix=${1//\//%2F}" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'
}
s3curl AKWORKER wrong-secret "/hpcc?list-type=2" >/dev/null
check "a wrong secret gets 403 from the test S3 server" test "$S3_STATUS" = 403
s3curl AKWORKER worker-secret "/hpcc?list-type=2" >/dev/null
check "the right one gets 200" test "$S3_STATUS" = 200

creds() { # FILE AK SK
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$2" "$3" >"$1"; chmod 600 "$1"
}
creds "$WORK/worker-creds" AKWORKER worker-secret
creds "$WORK/client-creds" AKCLIENT client-secret

# ---- IdPs and the scheduler ------------------------------------------------------
NODE_PATH=$("$SRCDIR/scripts/npm-deps.sh" 2>"$WORK/npm.log") || { cat "$WORK/npm.log"; not_ok "npm modules of the test IdP"; exit 1; }
export NODE_PATH
for t in acme:alice:secret-a globex:bob:secret-b; do
  IFS=: read -r name user pw <<<"$t"
  node "$SRCDIR/tests/idp/idp.js" --port 0 --port-file "$WORK/idp-$name.port" --alg ES256 --audience hpcc \
    --user "$user:$pw" --expires-in 600 >"$WORK/idp-$name.log" 2>&1 &
  PIDS+=($!)
  check "the IdP of tenant $name starts" wait_file "$WORK/idp-$name.port"
done
S="$WORK/sched"
"$HPCC" scheduler init "$S" --listen 127.0.0.1:0 >"$WORK/sched.init" 2>&1
SPIN=$(sed -n 's/^certificate pin *//p' "$WORK/sched.init")
sed -i "s/^heartbeat_interval_ms = .*/heartbeat_interval_ms = $HB_MS/" "$S/scheduler.ini"
sed -i "s/^token_ttl = .*/token_ttl = 300\nallow_insecure_idp = true/" "$S/scheduler.ini"
cat >>"$S/scheduler.ini" <<EOT
[tenant acme]
issuer = http://127.0.0.1:$(cat "$WORK/idp-acme.port")
audience = hpcc
client_id = hpcc-cli
images = $IMAGE
[tenant globex]
issuer = http://127.0.0.1:$(cat "$WORK/idp-globex.port")
audience = hpcc
client_id = hpcc-cli
images = $IMAGE
cache_mode = trusted
EOT
HPCC_LOG_FILE="$WORK/sched.log" HPCC_LOG_LEVEL=info "$HPCC" scheduler --config "$S/scheduler.ini" \
  --port-file "$S/port" >>"$WORK/sched.out" 2>&1 &
PIDS+=($!)
check "the scheduler starts (acme paranoid by default, globex trusted)" wait_file "$S/port"
SADDR=127.0.0.1:$(cat "$S/port")

# ---- workers with the shared tier -------------------------------------------------
make_worker() { # ID [extra [s3] lines...]
  local id=$1 d="$WORK/$1"; shift
  "$HPCC" worker init "$d" --id "$id" --listen 127.0.0.1:0 --allow-unsafe-local \
    --scheduler "$SADDR" --scheduler-pin "$SPIN" --worker-token-file "$S/worker-token" >"$d.init" 2>&1 || return 1
  printf '[s3]\nendpoint = %s\nregion = us-east-1\nbucket = hpcc\ncredentials_file = %s\ntimeout_ms = 1000\n' \
    "$S3" "$WORK/worker-creds" >>"$d/worker.ini"
  for l in "$@"; do printf '%s\n' "$l" >>"$d/worker.ini"; done
}
start_worker() { # ID
  local d="$WORK/$1"
  rm -f "$d/port"
  HPCC_LOG_FILE="$d.log" HPCC_LOG_LEVEL=info "$HPCC" worker --config "$d/worker.ini" --port-file "$d/port" \
    >>"$d.out" 2>&1 &
  eval "PID_$1=$!"
  PIDS+=($!)
  wait_file "$d/port" && wait_log "$WORK/sched.log" "worker $1 registered"
}
stop_worker() { local v="PID_$1"; kill "${!v}" 2>/dev/null; wait "${!v}" 2>/dev/null; sleep "0.$((HB_MS * 3))"; }

# A paranoid worker without a shared tier is refused at start.
make_worker w0
sed -i '/^\[s3\]/,$d' "$WORK/w0/worker.ini"
sed -i 's/^\[worker\]/[worker]\ncache_mode = paranoid/' "$WORK/w0/worker.ini"
out=$("$HPCC" worker --config "$WORK/w0/worker.ini" 2>&1); st=$?
if [ $st != 0 ] && grep -q "paranoid needs a shared tier" <<<"$out"; then ok "cache_mode = paranoid without [s3] is refused: $out"
else not_ok "cache_mode = paranoid without [s3] (status $st: $out)"; fi

make_worker w1
check "worker w1 (paranoid, [s3]) starts and registers" start_worker w1
check "w1 says it uses the shared tier" grep -q "shared tier: s3 bucket hpcc" "$WORK/w1.log"

# ---- tenant acme (paranoid): a daemon with S3 credentials of its own ----------------
export HPCC_REMOTE_SCHEDULER=$SADDR HPCC_REMOTE_SCHEDULER_PIN=$SPIN HPCC_REMOTE_IMAGE=$IMAGE
export HPCC_S3_ENDPOINT=$S3 HPCC_S3_BUCKET=hpcc HPCC_S3_CREDENTIALS_FILE="$WORK/client-creds"
login() { # TENANT USER PASSWORD CACHE_DIR
  export HPCC_REMOTE_TENANT=$1 HPCC_DIR=$4
  mkdir -m 700 -p "$4"
  HPCC_USERNAME=$2 HPCC_PASSWORD=$3 "$HPCC" login </dev/null >/dev/null 2>&1
}
fresh_cache() { # TENANT NAME → a new cache dir with the tenant's login
  "$HPCC" daemon stop >/dev/null 2>&1
  local from=$WORK/cache-a1
  [ "$1" = globex ] && from=$WORK/cache-b1
  export HPCC_DIR="$WORK/cache-$2" HPCC_REMOTE_TENANT=$1
  mkdir -m 700 -p "$HPCC_DIR" && cp -r "$from/auth" "$HPCC_DIR/auth"
}
check "alice logs in to tenant acme" login acme alice secret-a "$WORK/cache-a1"

P=$(new_project proj)
for i in 1 2 3 4; do printf '#include <stdio.h>\nint f%d(int x) { return x * %d + 1; }\n' "$i" "$i" >"$P/f$i.c"; done
(cd "$P" && for i in 1 2 3 4; do gcc -O2 -ffile-prefix-map="$P"=. -c f$i.c -o plain-f$i.o; done)
build() { # OBJECTS... → compiles each fN.c through hpcc into fN.o
  local ok=0
  for o in "$@"; do rm -f "$P/$o.o"; (cd "$P" && "$HPCC" gcc -O2 -c "$o.c" -o "$o.o") || ok=1; done
  return $ok
}
all_same() { # WHAT OBJECTS...
  local what=$1 bad=0; shift
  for o in "$@"; do cmp -s "$P/$o.o" "$P/plain-$o.o" || bad=1; done
  if [ $bad = 0 ]; then ok "$what: objects byte-identical to plain gcc"; else not_ok "$what: objects differ from plain gcc"; fi
}
check "acme build of f1 f2 (executed on w1)" build f1 f2
all_same "acme on w1" f1 f2
expect_stat remote.executed 2 "both executed remotely"
"$HPCC" daemon status >"$WORK/status-acme" 2>&1
check "daemon status: the paranoid tenant's S3 settings are refused" grep -q "remote_s3 refused (paranoid tenant)" "$WORK/status-acme"
check "the daemon log says so" grep -q "paranoid mode.*refused" "$WORK/hpcc.log"
"$HPCC" daemon stop >/dev/null 2>&1
for _ in $(seq 100); do [ "$(s3keys v1/acme/ac/ | wc -l)" -ge 2 ] && break; sleep 0.1; done
check "S3 holds acme's results under v1/acme/ac/<hh>/<digest>" test "$(s3keys v1/acme/ac/ | wc -l)" -ge 2
check "and its sources under v1/acme/cas/" test "$(s3keys v1/acme/cas/ | wc -l)" -ge 2
check "and direct manifests under v1/acme/dm/" test "$(s3keys v1/acme/dm/ | wc -l)" -ge 2
check "the paranoid tenant's daemon sent S3 nothing (no request with its key)" test "$(s3stat by_key.AKCLIENT.PUT)$(s3stat by_key.AKCLIENT.GET)$(s3stat by_key.AKCLIENT.HEAD)" = 000
KEY1=$(s3keys v1/acme/ac/ | head -1)
s3curl AKCLIENT client-secret "/hpcc/$KEY1" >/dev/null
check "(the client key itself is valid: the refusal is the daemon's)" test "$S3_STATUS" = 200

# ---- worker w2 hits what w1 compiled, through S3 -------------------------------------
make_worker w2
stop_worker w1
check "worker w2 (empty disk) starts and registers" start_worker w2
fresh_cache acme a2
check "a fresh acme cache builds f1 f2 on w2" build f1 f2
all_same "acme on w2" f1 f2
expect_stat remote.hit 2 "both are remote hits (w2 read w1's results from S3)"
expect_stat remote.executed 0 "nothing executed"
check "w2 executed nothing" bash -c "! grep -q 'executed ' '$WORK/w2.log'"
check "w2 kept what it read on its disk" test -n "$(ls -A "$WORK/w2/state/tenants/acme" 2>/dev/null)"

# ---- a corrupted object is never served -------------------------------------------------
make_worker w3
stop_worker w2
check "one S3 read per hit (a direct manifest carries its newest result): w2's tier says 's3 hits 2'" \
  grep -q "shared tier: s3 hits 2 misses 0 corrupt 0" "$WORK/w2.log"
check "worker w3 (empty disk) starts" start_worker w3
for k in $(s3keys v1/acme/ac/) $(s3keys v1/acme/dm/); do
  curl -sf "$S3/__test/corrupt?key=$k" >/dev/null || not_ok "corrupting $k"
done
ok "every acme result and direct manifest in S3 has one flipped bit"
fresh_cache acme a3
check "a fresh acme cache builds f1 f2 on w3" build f1 f2
all_same "acme on w3 after corruption" f1 f2
expect_stat remote.hit 0 "no hit was served from a damaged object"
check "w3 found the damage and deleted the objects" grep -q "does not match its key.*deleted" "$WORK/w3.log"
check "w3 compiled again" grep -q "executed " "$WORK/w3.log"
for _ in $(seq 100); do [ "$(s3keys v1/acme/ac/ | wc -l)" -ge 2 ] && break; sleep 0.1; done
good=0
for k in $(s3keys v1/acme/ac/); do
  s3curl AKWORKER worker-secret "/hpcc/$k" >"$WORK/obj"; [ "$(head -c 8 "$WORK/obj")" = HPCCS3O1 ] && good=$((good + 1))
done
check "S3 holds good results again (rewritten by w3)" test "$good" -ge 2

# ---- S3 stops in the middle of a build, then stays down ----------------------------------
fresh_cache acme a4
curl -sf "$S3/__test/delay?ms=400&count=1000" >/dev/null
( cd "$P" && for o in f3 f4 f1 f2; do rm -f "$o.o"; "$HPCC" gcc -O2 -c "$o.c" -o "$o.o" || exit 1; done ) &
BUILD=$!
n_exec=$(grep -c "executed " "$WORK/w3.log")
for _ in $(seq 300); do [ "$(grep -c "executed " "$WORK/w3.log")" -gt "$n_exec" ] && break; sleep 0.05; done
check "(the build is under way: w3 executed one more compile)" test "$(grep -c "executed " "$WORK/w3.log")" -gt "$n_exec"
kill "$S3_PID"; wait "$S3_PID" 2>/dev/null
check "the build with S3 stopped in the middle passes" wait "$BUILD"
all_same "S3 stopped mid-build" f3 f4 f1 f2
check "w3 noticed and served from its disk" grep -q "serving from local disk only" "$WORK/w3.log"
fresh_cache acme a5
check "with S3 down, a fresh cache builds all four" build f1 f2 f3 f4
all_same "S3 down" f1 f2 f3 f4
expect_stat remote.hit 4 "all four are hits from w3's disk"
"$HPCC" daemon stop >/dev/null 2>&1
check "the S3 server comes back (same port)" start_s3 "$S3_PORT"

# ---- tenant globex (trusted) ----------------------------------------------------------
check "bob logs in to tenant globex" login globex bob secret-b "$WORK/cache-b1"
stop_worker w3   # down for 10 s after the outage: a new worker sees S3 at once
make_worker w4
check "worker w4 starts" start_worker w4
check "globex builds f1 f2 (the same sources as acme)" build f1 f2
all_same "globex" f1 f2
expect_stat remote.hit 0 "globex hits none of acme's results"
expect_stat remote.executed 2 "both executed for globex"
"$HPCC" daemon status >"$WORK/status-globex" 2>&1
check "daemon status: the trusted tenant's daemon uses S3" grep -q "remote_s3 trusted" "$WORK/status-globex"
"$HPCC" daemon stop >/dev/null 2>&1
for _ in $(seq 100); do [ "$(s3stat by_key.AKCLIENT.PUT)" -ge 2 ] && break; sleep 0.1; done
check "the trusted daemon wrote its results to S3 with its own key" test "$(s3stat by_key.AKCLIENT.PUT)" -ge 2
for _ in $(seq 100); do [ "$(s3keys v1/globex/ac/ | wc -l)" -ge 2 ] && break; sleep 0.1; done
check "globex's objects are under v1/globex/" test "$(s3keys v1/globex/ac/ | wc -l)" -ge 2
# A worker without a shared tier (cache_mode local) and an empty disk: only
# the daemon itself can find the results in S3.
stop_worker w4
make_worker w5
sed -i '/^\[s3\]/,$d' "$WORK/w5/worker.ini"
check "worker w5 (no [s3], empty disk) starts" start_worker w5
fresh_cache globex b2
check "a fresh globex cache builds f1 f2" build f1 f2
all_same "globex, fresh cache" f1 f2
"$HPCC" daemon status >"$WORK/status-globex2" 2>&1
check "the trusted daemon served both from S3 itself" grep -q "remote_s3_hits 2" "$WORK/status-globex2"
check "w5 executed nothing" bash -c "! grep -q 'executed ' '$WORK/w5.log'"
stop_worker w5
check "worker w4 starts again" start_worker w4

# ---- tenant isolation through the worker's RPCs ----------------------------------------
W4_ADDR=127.0.0.1:$(cat "$WORK/w4/port")
W4_PIN=$(sed -n 's/^certificate pin *//p' "$WORK/w4.init")
GTOKEN=$(curl -sf "http://127.0.0.1:$(cat "$WORK/idp-globex.port")/test/token?sub=bob&aud=hpcc" | sed -n 's/.*"access_token": *"\([^"]*\)".*/\1/p')
printf '%s\n' "$GTOKEN" >"$WORK/g.at"
# w4 registers again a moment after it starts (and w5 may still look alive): ask until Route names w4.
for _ in $(seq 100); do
  rm -f "$WORK/g.rt"
  "$HPCC" scheduler route --tenant globex --image "$IMAGE" --access-token-file "$WORK/g.at" --token-out "$WORK/g.rt" \
    >"$WORK/g.route" 2>&1 && grep -q "worker w4" "$WORK/g.route" && break
  sleep 0.1
done
check "a globex routing token for w4" eval 'test -s "$WORK/g.rt" && grep -q "worker w4" "$WORK/g.route"'
# f5.c: compiled by acme only, now, so its result is a new key under v1/acme/ac/.
printf 'int f5(int x) { return x - 5; }\n' >"$P/f5.c"
(cd "$P" && gcc -O2 -ffile-prefix-map="$P"=. -c f5.c -o plain-f5.o)
acme_before=$(s3keys v1/acme/ac/ | sort)
fresh_cache acme a6
check "acme builds f3 f4 f5 on w4 (written to S3 now that it is back)" build f3 f4 f5
all_same "acme on w4" f3 f4 f5
"$HPCC" daemon stop >/dev/null 2>&1
for _ in $(seq 100); do [ "$(comm -13 <(echo "$acme_before") <(s3keys v1/acme/ac/ | sort) | wc -l)" -ge 3 ] && break; sleep 0.1; done
leaks=0 asked=0
for k in $(comm -13 <(echo "$acme_before") <(s3keys v1/acme/ac/ | sort)); do
  out=$("$WORKER_CALL" "$W4_ADDR" "$W4_PIN" "$WORK/g.rt" probe "${k##*/}"); asked=$((asked + 1))
  grep -qx "not found" <<<"$out" || leaks=$((leaks + 1))   # found, or no clear answer
done
check "Probe with globex's token finds none of acme's $asked results (each answered 'not found')" test "$asked" -ge 2 -a "$leaks" = 0
# The sources only acme uploaded (a blob's digest is its SHA-256).
blobs=$(cd "$P" && sha256sum f3.c f4.c f5.c | cut -c1-64)
# Controls: acme's own token finds its results and blobs on w4.
ATOKEN=$(curl -sf "http://127.0.0.1:$(cat "$WORK/idp-acme.port")/test/token?sub=alice&aud=hpcc" | sed -n 's/.*"access_token": *"\([^"]*\)".*/\1/p')
printf '%s\n' "$ATOKEN" >"$WORK/a.at"
"$HPCC" scheduler route --tenant acme --image "$IMAGE" --access-token-file "$WORK/a.at" --token-out "$WORK/a.rt" >/dev/null 2>&1
found=0
for k in $(comm -13 <(echo "$acme_before") <(s3keys v1/acme/ac/ | sort)); do
  "$WORKER_CALL" "$W4_ADDR" "$W4_PIN" "$WORK/a.rt" probe "${k##*/}" | grep -qx found && found=$((found + 1))
done
check "(control: acme's own token finds its $found new results)" test "$found" -ge 3
out=$("$WORKER_CALL" "$W4_ADDR" "$W4_PIN" "$WORK/a.rt" missing $blobs)
check "(control: FindMissing with acme's token finds its 3 sources)" grep -qx "missing 0 of 3" <<<"$out"
out=$("$WORKER_CALL" "$W4_ADDR" "$W4_PIN" "$WORK/g.rt" missing $blobs)
n=$(wc -w <<<"$blobs")
if grep -qx "missing $n of $n" <<<"$out"; then ok "FindMissing with globex's token says all $n of acme's blobs are missing"
else not_ok "FindMissing with globex's token: $(tr '\n' ' ' <<<"$out")"; fi

# ---- eviction: hpcc worker gc ---------------------------------------------------------
out=$("$HPCC" worker gc --config "$WORK/w4/worker.ini" --dry-run 2>&1)
check "hpcc worker gc --dry-run lists both tenants" grep -q globex <<<"$out"
acme_before=$(s3keys v1/acme/ | wc -l)
printf 'tenant_budget = globex 1 0\n' >>"$WORK/w4/worker.ini"
out=$("$HPCC" worker gc --config "$WORK/w4/worker.ini" 2>&1)
check "hpcc worker gc with a 1-byte budget for globex" test $? = 0
check "deletes every globex object" test "$(s3keys v1/globex/ | wc -l)" = 0
check "and none of acme's ($acme_before objects)" test "$(s3keys v1/acme/ | wc -l)" = "$acme_before" -a "$acme_before" -gt 0
printf 'max_age = 1s\n' >>"$WORK/w4/worker.ini"
sleep 2.1
out=$("$HPCC" worker gc --config "$WORK/w4/worker.ini" 2>&1)
check "with max_age = 1s, gc deletes every object older than that" test "$(s3keys v1/ | wc -l)" = 0

stop_all
exit $((T_FAILS > 0))
