#!/usr/bin/env bash
# depfile_formats.sh — checks that depfile_render() writes the same .d file,
# byte for byte and at the same path, as gcc and clang themselves.
#
# For every case of a matrix of dependency options (-MD, -MMD, -MF, -MT,
# -MQ, -MP, -Wp,-MD,path, -o or not, long and awkward paths) it
#   1. runs the real compiler with the user's options in a fresh copy of a
#      fixture tree and notes the one .d file the compiler wrote;
#   2. runs the compiler again as hpcc does: the user's dependency options
#      removed, "-MD -MF full.d" added;
#   3. runs the driver (depfile_driver.c), which parses full.d and renders
#      the user's file with depfile_render(), and compares path and bytes.
#
# The driver binary comes from $DEPFILE_DRIVER, or is built here with gcc.
# Compilers default to gcc and clang ($GCC, $CLANG); a missing one is skipped.
# Prints one line per failure and "N passed, N failed" last; exits 1 on any
# failure.
# The '$' in single quotes below is meant literally: names and targets with '$'.
# shellcheck disable=SC2016
set -uo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/depfile_formats.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
GCC=${GCC:-gcc}
CLANG=${CLANG:-clang}
passed=0
failed=0

die() { echo "depfile_formats: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

DRIVER=${DEPFILE_DRIVER:-}
if [[ -z $DRIVER ]]; then
    DRIVER=$TMP/depfile_driver
    gcc -std=gnu17 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -I"$SRCDIR/src" \
        -I"$SRCDIR/src/client" -I"$SRCDIR/src/common" -o "$DRIVER" \
        "$SRCDIR/tests/integration/depfile_driver.c" "$SRCDIR/src/client/depfile.c" \
        "$SRCDIR"/src/common/{strv,buf,fs,error}.c || die "cannot build the driver"
fi
[[ -x $DRIVER ]] || die "no driver at $DRIVER"

# The fixture: headers whose names need make quoting (space, '#', '$', ':'),
# enough long names that every rule wraps, an absolute include, a header in
# an -isystem directory (left out by -MMD), a source with awkward characters
# in its own name, and one with a long path.
LONG=inc/a_really_long_directory_name_for_wrapping/and_another_nested_level
DEEP=a_very_long_directory_name_that_goes_on/and_on_and_on_for_wrapping_tests
make_fixture() {
    local f=$TMP/fixture
    mkdir -p "$f/sub dir" "$f/h#ash" "$f/d\$ollar" "$f/$LONG" "$f/sys" "$f/obj" "$f/dir.x" \
        "$f/deps" "$f/src dir" "$f/$DEEP"
    cd "$f" || exit 1
    : > short.h; : > "sub dir/sp ace.h"; : > "h#ash/x#y.h"; : > "d\$ollar/z\$w.h"
    : > 'col:on.h'; : > 'back\slash.h'; : > 'sys/sysh.h'
    local i
    for i in 1 2 3 4 5 6 7 8; do : > "$LONG/header_number_$i.h"; done
    {
        echo '#include "short.h"'
        echo '#include "./short.h"'
        echo '#include "sub dir/sp ace.h"'
        echo '#include "h#ash/x#y.h"'
        echo '#include "d$ollar/z$w.h"'
        echo '#include "col:on.h"'
        echo '#include "back\slash.h"'
        for i in 1 2 3 4 5; do echo "#include \"$LONG/header_number_$i.h\""; done
        echo "#include \"$f/$LONG/header_number_6.h\""
        echo '#include <sysh.h>'
        echo '#include <stdio.h>'
        echo '#include "'"$LONG"'/header_number_7.h"'
        echo 'int main(void) { return 0; }'
    } > main.c
    # Names of every length from 1 to 60 in a shuffled order, some of them
    # with characters that quoting lengthens, so that every column of the
    # wrap limits is hit by some case of the -o length sweep below.
    mkdir -p w
    local k name pad
    for k in $(seq 1 60 | awk 'BEGIN { srand(7) } { print rand() "\t" $0 }' | sort | cut -f2); do
        pad=$(printf '%*s' "$k" '' | tr ' ' 'x')
        case $((k % 5)) in
            0) name="w/$pad.h" ;;
            1) name="w/s p$pad.h" ;;
            2) name="w/d\$$pad.h" ;;
            3) name="w/h#$pad.h" ;;
            4) name="w/b\\ $pad.h" ;;
        esac
        : > "$name"
        printf '#include "%s"\n' "$name" >> wrap.c
    done
    echo 'int wrap;' >> wrap.c
    printf '#include "../short.h"\n#include "../sub dir/sp ace.h"\nint odd;\n' > "src dir/we#ird\$ name.c"
    # gcc escapes a tab in a name; clang 14 does not, so only gcc can be
    # read back (see the report at the end of the matrix).
    : > "ta	b.h"; : > 'a\ b.h'
    printf '#include "ta\tb.h"\n#include "a\\ b.h"\nint tab;\n' > tab.c
    printf '#include "a\\ b.h"\nint bs;\n' > backslash.c
    printf '#include "short.h"\nint sh;\n' > short.h.c
    echo 'fun:nothing' > ignore.txt
    printf '#include "../../%s/header_number_8.h"\n#include <stddef.h>\nint deep;\n' "$LONG" \
        > "$DEEP/unit_with_a_rather_long_name.c"
    cd - > /dev/null || exit 1
}
make_fixture

# The user's command without its dependency options, as hpcc runs it.
strip_dep_options() {
    local skip=0 a
    STRIPPED=()
    for a in "$@"; do
        if ((skip)); then skip=0; continue; fi
        case $a in
            -MD | -MMD | -MP | -Wp,-MD,* | -Wp,-MMD,*) ;;
            -MF | -MT | -MQ) skip=1 ;;
            *) STRIPPED+=("$a") ;;
        esac
    done
}

fail() { echo "FAIL [$1]: $2"; failed=$((failed + 1)); }

# check NAME FAMILY COMPILER ARGS...
check() {
    local name=$1 family=$2 cc=$3
    shift 3
    command -v "$cc" > /dev/null || return 0
    local work=$TMP/work
    rm -rf "$work" "$TMP/full.d" "$TMP/render.d"
    cp -a "$TMP/fixture" "$work"
    if ! (cd "$work" && "$cc" "$@" 2> "$TMP/cc.err"); then
        fail "$name" "compiler failed: $(head -c 300 "$TMP/cc.err")"
        return
    fi
    local produced
    produced=$(cd "$work" && find . -type f -name '*.d' | sed 's|^\./||')
    strip_dep_options "$@"
    if ! (cd "$work" && "$cc" "${STRIPPED[@]}" -MD -MF "$TMP/full.d" 2> "$TMP/cc.err"); then
        fail "$name" "full -MD run failed: $(head -c 300 "$TMP/cc.err")"
        return
    fi
    local path
    if ! path=$(cd "$work" && "$DRIVER" "$family" "$TMP/full.d" "$TMP/render.d" \
        --system /usr/ --system sys/ -- "$@"); then
        fail "$name" "driver failed"
        return
    fi
    path=${path#./}
    if [[ $produced != "$path" ]]; then
        fail "$name" "compiler wrote '$produced', depfile_render chose '$path'"
        return
    fi
    if ! cmp -s "$work/$path" "$TMP/render.d"; then
        fail "$name" "content differs"
        diff <(cat -A "$work/$path") <(cat -A "$TMP/render.d") | head -20
        return
    fi
    passed=$((passed + 1))
}

SRC_ODD="src dir/we#ird\$ name.c"
SRC_DEEP=$DEEP/unit_with_a_rather_long_name.c
LONG_TARGET=some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o
for pair in "gcc $GCC" "clang $CLANG"; do
    read -r fam cc <<< "$pair"
    I=(-c -isystem sys)
    check "$fam -MD" "$fam" "$cc" "${I[@]}" main.c -MD
    check "$fam -MMD" "$fam" "$cc" "${I[@]}" main.c -MMD
    check "$fam -MD -o" "$fam" "$cc" "${I[@]}" main.c -MD -o out.o
    check "$fam -MMD -MP -o obj" "$fam" "$cc" "${I[@]}" main.c -MMD -MP -o obj/out.o
    check "$fam -MD -MP" "$fam" "$cc" "${I[@]}" main.c -MD -MP
    check "$fam -MD -MF" "$fam" "$cc" "${I[@]}" main.c -MD -MF custom.d
    check "$fam -MD -MF -o" "$fam" "$cc" "${I[@]}" main.c -MD -MF deps/custom.d -o obj/o.o
    check "$fam -MMD -MF -MP" "$fam" "$cc" "${I[@]}" main.c -MMD -MP -MF deps/x.d -o obj/o.o
    check "$fam -MT x -MT y" "$fam" "$cc" "${I[@]}" main.c -MD -MT x -MT y
    check "$fam -MQ \$x" "$fam" "$cc" "${I[@]}" main.c -MD -MQ '$x'
    check "$fam -MQ \$x -MT y" "$fam" "$cc" "${I[@]}" main.c -MD -MQ '$x' -MT y
    check "$fam -MQ a -MQ b -MT c" "$fam" "$cc" "${I[@]}" main.c -MD -MQ a -MQ b -MT c
    check "$fam -MT -MQ mix" "$fam" "$cc" "${I[@]}" main.c -MD -MT t1 -MQ 'q 1' -MT t2 -MQ 'q#2' -MT t3
    check "$fam -MT ./x -MQ ./y" "$fam" "$cc" "${I[@]}" main.c -MD -MT ./x -MQ ./y -o obj/o.o
    check "$fam -MT verbatim" "$fam" "$cc" "${I[@]}" main.c -MD -MT 'a b$$c' -o obj/o.o
    check "$fam -MQ quoted" "$fam" "$cc" "${I[@]}" main.c -MD -MQ 'with space # and $ and \ x' -o o.o
    check "$fam long -MT" "$fam" "$cc" "${I[@]}" main.c -MD -MT "$LONG_TARGET" -MT "$LONG_TARGET.2" \
        -MQ "$LONG_TARGET.3" -MT x
    check "$fam long -o" "$fam" "$cc" "${I[@]}" main.c -MMD -MP -o "obj/${LONG_TARGET//\//_}"
    check "$fam -Wp,-MD" "$fam" "$cc" "${I[@]}" main.c -Wp,-MD,f.d
    check "$fam -Wp,-MD -o" "$fam" "$cc" "${I[@]}" main.c -Wp,-MD,deps/f.d -o obj/x.o
    check "$fam -Wp,-MMD -MP -o" "$fam" "$cc" "${I[@]}" main.c -Wp,-MMD,f.d -MP -o obj/x.o
    check "$fam -o foo" "$fam" "$cc" "${I[@]}" main.c -MD -o foo
    check "$fam -o x.y.o" "$fam" "$cc" "${I[@]}" main.c -MD -o obj/x.y.o
    check "$fam -o dir.x/foo" "$fam" "$cc" "${I[@]}" main.c -MD -o dir.x/foo
    check "$fam -o ./foo.o" "$fam" "$cc" "${I[@]}" main.c -MD -o ./foo.o
    check "$fam -o .hidden" "$fam" "$cc" "${I[@]}" main.c -MD -o obj/.hidden
    check "$fam -o odd" "$fam" "$cc" "${I[@]}" main.c -MD -o 'obj/with space#$.o'
    check "$fam ./main.c" "$fam" "$cc" "${I[@]}" ./main.c -MD -MP
    check "$fam odd source" "$fam" "$cc" "${I[@]}" "$SRC_ODD" -MD -MP
    check "$fam odd source -o" "$fam" "$cc" "${I[@]}" "$SRC_ODD" -MMD -o obj/odd.o
    check "$fam deep source" "$fam" "$cc" "${I[@]}" "$SRC_DEEP" -MD -MP
    check "$fam deep source -MMD -o" "$fam" "$cc" "${I[@]}" "$SRC_DEEP" -MMD -o "$SRC_DEEP.o"
    check "$fam absolute source" "$fam" "$cc" "${I[@]}" "$TMP/work/main.c" -MD -MP -o obj/abs.o
    check "$fam backslash-space" "$fam" "$cc" "${I[@]}" backslash.c -MD -MP
    # The wrap sweep: the target length moves every name across the limit.
    for len in $(seq 1 14); do
        o=$(printf '%*s' "$len" '' | tr ' ' 'o')
        check "$fam wrap -o $o" "$fam" "$cc" "${I[@]}" wrap.c -MD -MP -o "$o"
        check "$fam wrap -MT/-MQ $len" "$fam" "$cc" "${I[@]}" wrap.c -MMD -MT "$o" -MQ "\$$o" -MT "t$o"
        # Many targets, so that the target line itself wraps at every offset.
        T=()
        for k in "$len" 17 23 5 31 11 29 13 19 7 26 3; do
            T+=(-MT "$(printf '%*s' "$k" '' | tr ' ' 't')")
        done
        check "$fam target sweep $len" "$fam" "$cc" "${I[@]}" short.h.c -MD "${T[@]}" -MQ "q\$ #$o"
    done
done
check "gcc tab" gcc "$GCC" -c tab.c -MD -MP
if command -v "$CLANG" > /dev/null; then
    # clang lists the sanitizer ignorelist before the source; -MP skips only the source.
    check "clang -fsanitize=address -MP" clang "$CLANG" -c -isystem sys main.c -fsanitize=address -MD -MP
    # With -MMD clang drops the default (system) ignorelist but keeps the user's.
    check "clang -fsanitize=address -MMD -MP" clang "$CLANG" -c -isystem sys main.c -fsanitize=address -MMD -MP
    check "clang -fsanitize-ignorelist -MMD" clang "$CLANG" -c -isystem sys main.c -fsanitize=address \
        -fsanitize-ignorelist=ignore.txt -MMD -MP -o obj/ign.o
fi

echo "$passed passed, $failed failed"
((failed == 0))
