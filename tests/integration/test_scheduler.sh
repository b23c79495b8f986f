#!/usr/bin/env bash
# The whole remote path through the scheduler, against real servers on
# loopback: two test IdPs (oauth2-mock-server, one RS256 and one ES256, one
# per tenant, with a real password check and an aud claim), `hpcc scheduler`,
# two workers that register and heartbeat (runtime unsafe-local), and
# clients that sign in with `hpcc login`. Checks: login and remote build;
# a wrong password; every kind of bad access token refused by Route; a
# tenant-A token presented as tenant B; JWKS refetched on a new kid at a
# bounded rate; routing tokens replayed against another worker or image
# refused by the worker; a wrong worker token cannot register; a dead
# worker leaves the routing table within two heartbeat periods; two
# scheduler replicas answer alike; scheduler down -> builds still pass.
. "$(dirname "$0")/lib.sh"
HPCCD="$(dirname "$HPCC")/hpccd"
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
WORKER_CALL="$(dirname "$HPCC")/tests/unit/worker_call"
IMAGE=$("$HPCCD" worker host-image)
IMAGE2=sha256:2222222222222222222222222222222222222222222222222222222222222222
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; PIDS=(); }
trap 'stop_all; cleanup' EXIT
HB_MS=400


# ---- two IdPs, one per tenant ----------------------------------------------
NODE_PATH=$("$SRCDIR/scripts/npm-deps.sh" 2>"$WORK/npm.log") || { cat "$WORK/npm.log"; not_ok "npm modules of the test IdP"; exit 1; }
export NODE_PATH
start_idp() { # NAME ALG USER:PASSWORD
  node "$SRCDIR/tests/idp/idp.js" --port 0 --port-file "$WORK/$1.port" --alg "$2" --audience hpcc \
    --user "$3" --expires-in 600 >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  wait_file "$WORK/$1.port"
}
check "IdP of tenant acme starts (RS256)" start_idp idp-a RS256 alice:secret-a
check "IdP of tenant globex starts (ES256)" start_idp idp-b ES256 bob:secret-b
# Tenant initech's access tokens live 30 s: the daemon must refresh before each Route.
node "$SRCDIR/tests/idp/idp.js" --port 0 --port-file "$WORK/idp-c.port" --alg RS256 --audience hpcc \
  --user carol:secret-c --expires-in 30 >"$WORK/idp-c.log" 2>&1 &
PIDS+=($!)
check "IdP of tenant initech starts (30 s tokens)" wait_file "$WORK/idp-c.port"
IDP_C=http://127.0.0.1:$(cat "$WORK/idp-c.port")
IDP_A=http://127.0.0.1:$(cat "$WORK/idp-a.port")
IDP_B=http://127.0.0.1:$(cat "$WORK/idp-b.port")
mint() { # IDP QUERY → an access token from the IdP's test endpoint
  curl -sf "$1/test/token?$2" | sed -n 's/.*"access_token": *"\([^"]*\)".*/\1/p'
}

# ---- the scheduler -----------------------------------------------------------
S="$WORK/sched"
"$HPCC" scheduler init "$S" --listen 127.0.0.1:0 >"$WORK/sched.init" 2>&1
check "hpcc scheduler init makes TLS files, a signing key and a worker token" \
  test -f "$S/scheduler.crt" -a -f "$S/routing.pem" -a -f "$S/worker-token"
SPIN=$(sed -n 's/^certificate pin *//p' "$WORK/sched.init")
check "the signing key and worker token are 0600" \
  test "$(command stat -c %a "$S/routing.pem")$(command stat -c %a "$S/worker-token")" = 600600
sed -i "s/^heartbeat_interval_ms = .*/heartbeat_interval_ms = $HB_MS/" "$S/scheduler.ini"
sed -i "s/^token_ttl = .*/token_ttl = 300\nallow_insecure_idp = true\njwks_min_interval = 2/" "$S/scheduler.ini"
cat >>"$S/scheduler.ini" <<EOF
[tenant acme]
issuer = $IDP_A
audience = hpcc
client_id = hpcc-cli
scope = openid offline_access
images = $IMAGE
images = $IMAGE2
[tenant globex]
issuer = $IDP_B
jwks_url = $IDP_B/jwks
token_url = $IDP_B/token
audience = hpcc
client_id = hpcc-cli
images = $IMAGE
[tenant initech]
issuer = $IDP_C
audience = hpcc
client_id = hpcc-cli
images = $IMAGE
EOF
# More tenants on IdP A, so that the replica check covers several (tenant, image) pairs
# (each with an audience of its own: one issuer and audience belong to one tenant).
for i in 1 2 3 4 5 6; do
  printf '[tenant team%d]\nissuer = %s\naudience = hpcc-team%d\nclient_id = hpcc-cli\nimages = %s\n' "$i" "$IDP_A" "$i" "$IMAGE" \
    >>"$S/scheduler.ini"
done

start_scheduler() { # DIR NAME
  rm -f "$1/port.$2"
  HPCC_LOG_FILE="$WORK/$2.log" HPCC_LOG_LEVEL=debug "$HPCC" scheduler --config "$1/scheduler.ini" \
    --port-file "$1/port.$2" >>"$WORK/$2.out" 2>&1 &
  eval "PID_$2=$!"
  PIDS+=($!)
  wait_file "$1/port.$2"
}
check "hpcc scheduler starts" start_scheduler "$S" s1
SPORT=$(cat "$S/port.s1")
SADDR=127.0.0.1:$SPORT

# ---- workers -------------------------------------------------------------------
start_worker() { # ID TOKEN_FILE [IMAGES...] → registers with the scheduler(s) in $SCHEDS
  local id=$1 tok=$2; shift 2
  local d="$WORK/$id"
  if [ ! -f "$d/worker.ini" ]; then
    "$HPCC" worker init "$d" --id "$id" --listen 127.0.0.1:0 --allow-unsafe-local \
      --scheduler "$SCHEDS" --scheduler-pin "$SPIN" --worker-token-file "$tok" >"$d.init" 2>&1 || return 1
    for img in "$@"; do printf 'images = %s\n' "$img" >>"$d/worker.ini.images"; done
    if [ -f "$d/worker.ini.images" ]; then
      awk -v add="$(cat "$d/worker.ini.images")" '{ print } /^\[worker\]/ { print add }' "$d/worker.ini" >"$d/w.tmp" &&
        mv "$d/w.tmp" "$d/worker.ini"
    fi
  fi
  rm -f "$d/port"
  HPCC_LOG_FILE="$d.log" HPCC_LOG_LEVEL=info "$HPCC" worker --config "$d/worker.ini" --port-file "$d/port" \
    >>"$d.out" 2>&1 &
  eval "PID_${id//-/_}=$!"
  PIDS+=($!)
  wait_file "$d/port"
}
SCHEDS=$SADDR
check "worker w1 starts (serves the host image and a second one)" start_worker w1 "$S/worker-token" "$IMAGE2"
check "worker w1 registers with the scheduler" wait_log "$WORK/s1.log" "worker w1 registered"
W1_PIN=$(sed -n 's/^certificate pin *//p' "$WORK/w1.init")

# A worker with a wrong worker token cannot register.
printf 'this-is-not-the-worker-token\n' >"$WORK/bad-token"
chmod 600 "$WORK/bad-token"
check "worker w-bad (wrong worker token) starts" start_worker w-bad "$WORK/bad-token"
check "the scheduler refuses w-bad's registration" wait_log "$WORK/s1.log" "w-bad.*wrong worker token"
sleep 0.5
if grep -q "worker w-bad registered" "$WORK/s1.log"; then not_ok "w-bad must not be in the table"; else ok "w-bad is not in the worker table"; fi

# ---- client: login -------------------------------------------------------------
export HPCC_REMOTE_SCHEDULER=$SADDR HPCC_REMOTE_SCHEDULER_PIN=$SPIN HPCC_REMOTE_TENANT=acme HPCC_REMOTE_IMAGE=$IMAGE
AUTH="$HPCC_DIR/auth/acme.json"
out=$(HPCC_USERNAME=alice HPCC_PASSWORD=wrong "$HPCC" login 2>&1 </dev/null)
st=$?
check "a wrong password fails (exit 1)" test "$st" = 1
if grep -qi "password" <<<"$out"; then ok "the message says why: $out"; else not_ok "unclear wrong-password message: $out"; fi
check "and leaves no token file" test ! -e "$AUTH"
out=$(HPCC_USERNAME=alice HPCC_PASSWORD=secret-a "$HPCC" login 2>&1 </dev/null)
check "hpcc login (password grant at the tenant's IdP, found through GetTenantIdP)" grep -q "logged in" <<<"$out"
check "the token file is 0600" test "$(command stat -c %a "$AUTH" 2>/dev/null)" = 600
out=$("$HPCC" auth status 2>&1)
check "hpcc auth status: logged in as alice" grep -q alice <<<"$out"

# ---- a remote build through Route ------------------------------------------------
P=$(new_project proj)
printf '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n' >"$P/hello.c"
printf 'int twice(int x) { return 2 * x; }\n' >"$P/two.c"
(cd "$P" && gcc -O2 -ffile-prefix-map="$P"=. -c hello.c -o plain-hello.o && gcc -O2 -ffile-prefix-map="$P"=. -c two.c -o plain-two.o)
(cd "$P" && "$HPCC" gcc -O2 -c hello.c -o hello.o) && ok "remote compile of hello.c passes" || not_ok "remote compile"
same "$P/hello.o" "$P/plain-hello.o" "the object compiled on w1 is byte-identical to plain gcc"
expect_stat remote.executed 1 "it executed remotely (remote.executed = 1)"
check "the worker log shows the execution" grep -q "execut" "$WORK/w1.log"
"$HPCC" daemon status >"$WORK/status" 2>&1
check "daemon status names the scheduler's choice, w1" grep -q "remote_worker w1" "$WORK/status"
# A second developer (fresh local cache): a one-round-trip hit.
"$HPCC" daemon stop >/dev/null 2>&1
cp -r "$HPCC_DIR/auth" "$WORK/auth-saved"
export HPCC_DIR="$WORK/cache2"
mkdir -m 700 -p "$HPCC_DIR" && cp -r "$WORK/auth-saved" "$HPCC_DIR/auth"
rm -f "$P/hello.o"
(cd "$P" && "$HPCC" gcc -O2 -c hello.c -o hello.o)
expect_stat remote.hit 1 "a fresh cache gets a remote hit through the scheduler"
same "$P/hello.o" "$P/plain-hello.o" "and the same bytes"

# ---- Route refuses bad access tokens --------------------------------------------
route() { # TENANT IMAGE ACCESS_TOKEN [more options] → the command's output; status in $?
  printf '%s\n' "$3" >"$WORK/at"
  local t=$1 i=$2; shift 3
  "$HPCC" scheduler route --tenant "$t" --image "$i" --access-token-file "$WORK/at" "$@" 2>&1
}
refused() { # DESCRIPTION PATTERN TENANT IMAGE TOKEN
  local out; out=$(route "$3" "$4" "$5"); local st=$?
  if [ $st != 0 ] && grep -qi "$2" <<<"$out"; then ok "$1"; else not_ok "$1 (status $st: $out)"; fi
}
GOOD_A=$(mint "$IDP_A" "sub=alice&aud=hpcc")
out=$(route acme "$IMAGE" "$GOOD_A")
check "a good token of tenant acme is routed to w1" grep -q "worker w1" <<<"$out"
refused "tenant acme's token presented as tenant globex is refused" "refused" globex "$IMAGE" "$GOOD_A"
refused "an expired token is refused" "expired" acme "$IMAGE" "$(mint "$IDP_A" "aud=hpcc&exp_in=-300")"
refused "a token with another audience is refused" "aud" acme "$IMAGE" "$(mint "$IDP_A" "aud=other")"
refused "a token not yet valid (nbf) is refused" "nbf\|not yet\|future" acme "$IMAGE" "$(mint "$IDP_A" "aud=hpcc&nbf_in=600")"
refused "a forged signature is refused" "signature" acme "$IMAGE" "$(mint "$IDP_A" "aud=hpcc&kid_mode=forged")"
refused "a token of another issuer is refused" "iss" acme "$IMAGE" "$(mint "$IDP_A" "aud=hpcc&iss=http://evil.example")"
refused "no token at all is refused" "token" acme "$IMAGE" ""
refused "an image the tenant may not use is refused" "may not use" globex "$IMAGE2" "$(mint "$IDP_B" "aud=hpcc")"
refused "an unknown tenant is refused" "unknown tenant" nosuch "$IMAGE" "$GOOD_A"
GOOD_B=$(mint "$IDP_B" "sub=bob&aud=hpcc")
out=$(route globex "$IMAGE" "$GOOD_B")
check "tenant globex's ES256 token is routed" grep -q "worker w" <<<"$out"

# Unknown kids: refused, and the JWKS is fetched again at most once per jwks_min_interval.
sleep 2.1
# Minted first (each needs a fresh key: about a second), then presented in a burst.
unknown=()
for i in 1 2 3 4 5 6; do unknown+=("$(mint "$IDP_A" "aud=hpcc&kid_mode=unknown")"); done
f0=$(curl -sf "$IDP_A/test/stats" | sed -n 's/.*"jwks_fetches": *\([0-9]*\).*/\1/p')
t0=$EPOCHREALTIME
for tok in "${unknown[@]}"; do
  out=$(route acme "$IMAGE" "$tok")
done
f1=$(curl -sf "$IDP_A/test/stats" | sed -n 's/.*"jwks_fetches": *\([0-9]*\).*/\1/p')
# At most one fetch per jwks_min_interval (2 s) while the burst lasted.
allowed=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", 1 + (b - a) / 2 }')
check "six tokens with unknown kids are refused: $out" grep -qi "kid\|key" <<<"$out"
check "and cause at most $allowed JWKS fetch(es) ($f0 -> $f1)" test $((f1 - f0)) -le "$allowed" -a "$allowed" -lt 6
# The IdP rotates its key: after the interval, the new kid is fetched and accepted.
curl -sf "$IDP_A/test/add-key" >/dev/null
sleep 2.1
out=$(route acme "$IMAGE" "$(mint "$IDP_A" "aud=hpcc")")
check "a token signed with the IdP's new key is accepted after a JWKS refetch" grep -q "worker w1" <<<"$out"

# ---- routing tokens replayed -----------------------------------------------------
SCHEDS=$SADDR
check "worker w2 starts" start_worker w2 "$S/worker-token"
check "worker w2 registers" wait_log "$WORK/s1.log" "worker w2 registered"
W2_PORT=$(cat "$WORK/w2/port")
W2_PIN=$(sed -n 's/^certificate pin *//p' "$WORK/w2.init")
W1_PORT=$(cat "$WORK/w1/port")
out=$(route acme "$IMAGE2" "$(mint "$IDP_A" "aud=hpcc")" --token-out "$WORK/rt-image2")
check "Route for the second image goes to w1, the only worker holding it" grep -q "worker w1" <<<"$out"
out=$("$WORKER_CALL" "127.0.0.1:$W2_PORT" "$W2_PIN" "$WORK/rt-image2" "$IMAGE2")
check "w1's routing token replayed against w2 is refused by w2: $out" grep -q "status 7: .*worker" <<<"$out"
out=$("$WORKER_CALL" "127.0.0.1:$W1_PORT" "$W1_PIN" "$WORK/rt-image2" "$IMAGE")
check "a routing token for one image used for another is refused by the worker: $out" grep -q "status 7: .*image" <<<"$out"

# ---- two scheduler replicas answer alike -------------------------------------------
S2="$WORK/sched2"
mkdir -p "$S2"
cp "$S"/scheduler.crt "$S"/scheduler.key "$S"/routing.pem "$S"/worker-token "$S"/scheduler.ini "$S2/"
check "a second scheduler replica (same configuration and keys) starts" start_scheduler "$S2" s2
S2ADDR=127.0.0.1:$(cat "$S2/port.s2")
# Both workers register with both replicas after a restart with both addresses.
for id in w1 w2; do
  kill "$(eval echo \$PID_$id)"; wait "$(eval echo \$PID_$id)" 2>/dev/null
  sed -i "s/^address = .*/address = $SADDR, $S2ADDR/" "$WORK/$id/worker.ini"
  start_worker "$id" "$S/worker-token" || not_ok "restart $id"
done
check "w1 registers with replica 2" wait_log "$WORK/s2.log" "worker w1 registered"
check "w2 registers with replica 2" wait_log "$WORK/s2.log" "worker w2 registered"
sleep 1
agree=0 total=0
declare -A chosen=()
for t in acme globex team1 team2 team3 team4 team5 team6; do
  case $t in globex) tok=$(mint "$IDP_B" "aud=hpcc") ;; team*) tok=$(mint "$IDP_A" "aud=hpcc-$t") ;; *) tok=$(mint "$IDP_A" "aud=hpcc") ;; esac
  a=$(route $t "$IMAGE" "$tok" --scheduler "$SADDR" --pin "$SPIN" | head -1)
  b=$(route $t "$IMAGE" "$tok" --scheduler "$S2ADDR" --pin "$SPIN" | head -1)
  total=$((total + 1)); [ -n "$a" ] && [ "$a" = "$b" ] && agree=$((agree + 1))
  chosen[${a%% at *}]=1
done
check "both replicas route each of $total (tenant, image) pairs to the same worker ($agree agree)" test "$agree" = "$total"
check "and the pairs spread over both workers (${!chosen[*]})" test "${#chosen[@]}" = 2

# ---- hpcc reproduce reaches the worker that ran the compile --------------------------
# hello.c ran on w1; with two workers the scheduler may route acme elsewhere,
# so the daemon asks Route for w1 by name.
normal=$(route acme "$IMAGE" "$(mint "$IDP_A" "aud=hpcc")" | head -1)
hello_src=$(sha256sum <"$P/hello.c" | cut -c1-16)
out=$(cd "$P" && "$HPCC" reproduce "$hello_src" 2>&1); st=$?
check "hpcc reproduce (routed; acme's usual route: ${normal%% at *}) is reproducible on w1" \
  eval '[ $st = 0 ] && grep -q "^reproducible" <<<"$out" && grep -q "worker w1" <<<"$out"'
check "and the reproduced object is plain gcc's" grep -q "sha256:$(sha256sum <"$P/plain-hello.o" | cut -d' ' -f1)" <<<"$out"

# ---- the daemon refreshes an expiring access token ------------------------------------
"$HPCC" daemon stop >/dev/null 2>&1
SAVED_DIR=$HPCC_DIR
export HPCC_DIR="$WORK/cache3" HPCC_REMOTE_TENANT=initech
mkdir -m 700 -p "$HPCC_DIR"
HPCC_USERNAME=carol HPCC_PASSWORD=secret-c "$HPCC" login >/dev/null 2>&1 </dev/null
access() { sed -n 's/.*"access_token": *"\([^"]*\)".*/\1/p' "$HPCC_DIR/auth/initech.json"; }
treq() { curl -sf "$IDP_C/test/stats" | sed -n 's/.*"token_requests": *\([0-9]*\).*/\1/p'; }
a0=$(access) r0=$(treq)
printf 'int three(int x) { return 3 * x; }\n' >"$P/three.c"
(cd "$P" && gcc -O2 -ffile-prefix-map="$P"=. -c three.c -o plain-three.o)
(cd "$P" && "$HPCC" gcc -O2 -c three.c -o three.o)
expect_stat remote.executed 1 "tenant initech compiles remotely with a 30 s access token"
same "$P/three.o" "$P/plain-three.o" "and the object is right"
a1=$(access) r1=$(treq)
check "the daemon refreshed the access token (token requests $r0 -> $r1)" test -n "$a1" -a "$a1" != "$a0" -a "$r1" -gt "$r0"
check "the refreshed token file is still 0600" test "$(command stat -c %a "$HPCC_DIR/auth/initech.json")" = 600
# Logged out: the build passes locally and says why in the counters.
"$HPCC" logout >/dev/null 2>&1
zero_stats
printf 'int four(int x) { return 4 * x; }\n' >"$P/four.c"
(cd "$P" && "$HPCC" gcc -O2 -c four.c -o four.o) && ok "logged out, the build still passes" || not_ok "build after logout"
got=$(stat fallback.remote-token)
check "and counts fallback.remote-token ($got)" test "${got:-0}" -ge 1
"$HPCC" daemon stop >/dev/null 2>&1
export HPCC_DIR=$SAVED_DIR HPCC_REMOTE_TENANT=acme

# ---- a dead worker leaves the table within two heartbeat periods ---------------------
out=$(route acme "$IMAGE2" "$(mint "$IDP_A" "aud=hpcc")")
check "before: (acme, image 2) goes to w1" grep -q "worker w1" <<<"$out"
kill -9 "$PID_w1"; wait "$PID_w1" 2>/dev/null
t0=$EPOCHREALTIME
sleep "$(awk -v ms=$HB_MS 'BEGIN { printf "%.3f", 2 * ms / 1000 }')"
out=$(route acme "$IMAGE2" "$(mint "$IDP_A" "aud=hpcc")")
check "2 heartbeat periods after w1 died, Route no longer names it: $out" grep -q "no healthy worker" <<<"$out"
out=$(route acme "$IMAGE" "$(mint "$IDP_A" "aud=hpcc")")
check "and the host image goes to w2" grep -q "worker w2" <<<"$out"

# ---- the scheduler down: builds still pass ---------------------------------------------
kill "$PID_s1" "$PID_s2" 2>/dev/null; wait "$PID_s1" "$PID_s2" 2>/dev/null
zero_stats
rm -f "$P/two.o"
(cd "$P" && "$HPCC" gcc -O2 -c two.c -o two.o) && ok "with the scheduler down, the build passes" || not_ok "build with the scheduler down"
same "$P/two.o" "$P/plain-two.o" "the local fallback's object is right"
got=$(stat fallback.remote-unreachable)
check "and counts fallback.remote-unreachable ($got)" test "${got:-0}" -ge 1

# ---- a scheduler that accepts connections and never answers ------------------------------
# One compile waits for Route's deadline (10 s); the others give up after 2 s and compile
# locally; then nobody asks again for 5 s.
node -e 'const s = require("net").createServer(() => {}); s.listen(0, "127.0.0.1", () => {
  require("fs").writeFileSync(process.argv[1], String(s.address().port)); });' "$WORK/hole.port" &
PIDS+=($!)
wait_file "$WORK/hole.port"
"$HPCC" daemon stop >/dev/null 2>&1
export HPCC_REMOTE_SCHEDULER=127.0.0.1:$(cat "$WORK/hole.port")
zero_stats
for i in 1 2 3 4; do printf 'int h%d(int x) { return x + %d; }\n' "$i" "$i" >"$P/h$i.c"; done
t0=$EPOCHREALTIME
cpids=()
for i in 1 2 3 4; do (cd "$P" && "$HPCC" gcc -O2 -c "h$i.c" -o "h$i.o") & cpids+=($!); done
wait_ok=0
for p in "${cpids[@]}"; do wait "$p" || wait_ok=1; done
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
check "four parallel compiles against a silent scheduler all pass" test "$wait_ok" = 0 -a -f "$P/h4.o"
check "within the Route deadline plus slack ($secs s)" awk -v s="$secs" 'BEGIN { exit !(s < 14) }'
got=$(stat fallback.remote-unreachable)
check "and each counts fallback.remote-unreachable ($got)" test "${got:-0}" = 4
"$HPCC" daemon stop >/dev/null 2>&1
export HPCC_REMOTE_SCHEDULER=$SADDR

# ---- logout ----------------------------------------------------------------------------------
"$HPCC" logout >/dev/null 2>&1
check "hpcc logout removes the token file" test ! -e "$HPCC_DIR/auth/acme.json"
"$HPCC" auth status >/dev/null 2>&1
check "hpcc auth status then exits 1" test $? = 1
