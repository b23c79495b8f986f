#!/usr/bin/env bash
# Two checkouts of one project at different absolute paths (of different
# lengths), each marked with `hpcc init`, built with -g -O2 -MMD and -I with
# an absolute path into the checkout. Building the second after the first
# must hit for every compile; the objects of both are byte-identical; each
# checkout's .d names its own paths and equals what plain gcc (with
# -ffile-prefix-map=<that root>=.) writes there.
. "$(dirname "$0")/lib.sh"


# ---- one project, written into a directory -------------------------------------

write_project() { # DIR
  local d=$1
  mkdir -p "$d/src" "$d/lib" "$d/include/proj" "$d/build"
  cat >"$d/include/proj/config.h" <<'EOF'
#pragma once
#define PROJ_NAME "proj"
#define PROJ_SCALE 3
EOF
  cat >"$d/include/proj/util.h" <<'EOF'
#pragma once
#include <stdio.h>
#include "proj/config.h"
/* __FILE__ in a header found through an absolute -I path. */
static inline const char *util_where(void) { return __FILE__; }
int util_scale(int x);
EOF
  cat >"$d/include/proj/list.h" <<'EOF'
#pragma once
#include <stddef.h>
struct node { struct node *next; int value; };
size_t list_length(const struct node *n);
EOF
  cat >"$d/src/main.c" <<'EOF'
#include <stdlib.h>
#include "proj/util.h"
#include "proj/list.h"
int main(int argc, char **argv)
{
	struct node b = { NULL, 2 }, a = { &b, 1 };
	printf("%s %s %d %zu\n", PROJ_NAME, util_where(), util_scale(argc), list_length(&a));
	return argv[0] ? EXIT_SUCCESS : EXIT_FAILURE;
}
EOF
  cat >"$d/src/util.c" <<'EOF'
#include <assert.h>
#include "proj/util.h"
int util_scale(int x)
{
	assert(x >= 0);
	return x * PROJ_SCALE;
}
EOF
  cat >"$d/lib/list.c" <<'EOF'
#include "proj/list.h"
size_t list_length(const struct node *n)
{
	size_t k = 0;
	for (; n; n = n->next)
		k++;
	return k;
}
EOF
  (cd "$d" && "$HPCC" init >/dev/null)
  # Old enough that hpcc cannot take them for modified during a compile.
  find "$d" -type f -exec touch -d '10 seconds ago' {} +
}

C1="$WORK/c1/proj"
C2="$WORK/checkouts/the-second-one-has-a-much-longer-path/proj"
write_project "$C1"
write_project "$C2"
sleep 0.1

# The build: name, directory (relative to the root), source, object.
UNITS=("main . src/main.c build/main.o"
       "util . src/util.c build/util.o"
       "list lib list.c ../build/list.o")
NUNITS=${#UNITS[@]}

# compile ROOT UNIT [PREFIX...]: runs PREFIX... gcc for UNIT in ROOT. The
# plain compile passes extra arguments after the command (EXTRA).
compile() { # root "name dir src obj" mode(plain|hpcc)
  local root=$1 name dir src obj
  read -r name dir src obj <<<"$2"
  if [ "$3" = plain ]; then
    (cd "$root/$dir" && gcc -g -O2 -MMD -I"$root/include" -c "$src" -o "$obj" -ffile-prefix-map="$root"=.)
  else
    (cd "$root/$dir" && "$HPCC" gcc -g -O2 -MMD -I"$root/include" -c "$src" -o "$obj")
  fi
}
# build ROOT TAG: plain compiles kept under $WORK/ref/TAG, then through hpcc.
build() {
  local root=$1 tag=$2 u name dir src obj s
  mkdir -p "$WORK/ref/$tag"
  for u in "${UNITS[@]}"; do
    read -r name dir src obj <<<"$u"
    rm -f "$root/build/$name.o" "$root/build/$name.d"
    compile "$root" "$u" plain || not_ok "$tag: plain compile of $name failed"
    mv "$root/build/$name.o" "$root/build/$name.d" "$WORK/ref/$tag/"
  done
  zero_stats
  for u in "${UNITS[@]}"; do
    read -r name dir src obj <<<"$u"
    compile "$root" "$u" hpcc; s=$?
    check "$tag: $name: exit status 0" test $s = 0
    same "$WORK/ref/$tag/$name.o" "$root/build/$name.o" "$tag: $name.o == plain (prefix-mapped) object"
    same "$WORK/ref/$tag/$name.d" "$root/build/$name.d" "$tag: $name.d == plain .d"
  done
}

# ---- first checkout: all misses ---------------------------------------------------

build "$C1" first
expect_counts "first checkout: every compile a miss" "$NUNITS" 0
for u in "${UNITS[@]}"; do
  read -r name _ <<<"$u"
  check "first checkout: $name.d names the first checkout's include path" grep -qF "$C1/include/proj/" "$C1/build/$name.d"
done

# ---- second checkout: all hits ------------------------------------------------------

build "$C2" second
expect_counts "second checkout: every compile a hit" 0 "$NUNITS"
for u in "${UNITS[@]}"; do
  read -r name _ <<<"$u"
  same "$C1/build/$name.o" "$C2/build/$name.o" "$name.o identical in both checkouts"
  same "$WORK/ref/first/$name.o" "$WORK/ref/second/$name.o" "$name.o: the plain compiles agree too"
  check "second checkout: $name.d names its own include path" grep -qF "$C2/include/proj/" "$C2/build/$name.d"
  check "second checkout: $name.d does not name the first checkout" bash -c '! grep -qF "$1" "$2"' _ "$C1" "$C2/build/$name.d"
done
check "the checkouts' paths differ in length" test ${#C1} != ${#C2}

# ---- the first again: hits, each .d its own -------------------------------------------

zero_stats
for u in "${UNITS[@]}"; do
  read -r name _ <<<"$u"
  rm -f "$C1/build/$name.o" "$C1/build/$name.d"
  compile "$C1" "$u" hpcc
  same "$WORK/ref/first/$name.o" "$C1/build/$name.o" "first checkout rebuilt: $name.o == plain"
  same "$WORK/ref/first/$name.d" "$C1/build/$name.d" "first checkout rebuilt: $name.d == plain"
done
expect_counts "first checkout rebuilt: every compile a hit" 0 "$NUNITS"

# ---- a header changed in the second checkout only -------------------------------------

sed -i 's/PROJ_SCALE 3/PROJ_SCALE 4/' "$C2/include/proj/config.h"
touch -d '5 seconds ago' "$C2/include/proj/config.h"; sleep 0.1
zero_stats
for u in "${UNITS[@]}"; do
  read -r name _ <<<"$u"
  compile "$C2" "$u" plain && mv "$C2/build/$name.o" "$WORK/ref/second/$name.o2" && mv "$C2/build/$name.d" "$WORK/ref/second/$name.d2"
  compile "$C2" "$u" hpcc
  same "$WORK/ref/second/$name.o2" "$C2/build/$name.o" "second checkout, config.h changed: $name.o == plain"
  same "$WORK/ref/second/$name.d2" "$C2/build/$name.d" "second checkout, config.h changed: $name.d == plain"
done
# main.c and util.c include config.h (through util.h); list.c does not.
expect_counts "second checkout, config.h changed: main and util miss, list hits" 2 1
zero_stats
for u in "${UNITS[@]}"; do
  read -r name _ <<<"$u"
  rm -f "$C1/build/$name.o"
  compile "$C1" "$u" hpcc
  same "$WORK/ref/first/$name.o" "$C1/build/$name.o" "first checkout after that: $name.o still its own"
done
expect_counts "first checkout after that: every compile still a hit" 0 "$NUNITS"
exit 0
