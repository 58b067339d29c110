#!/bin/sh
# The linker that release links of `berth` run: lld, through this script
# (build.rs writes a two-line `ld.bfd` that runs it, and has the compiler
# driver look for that name):
#
#   ld-order.sh REAL_LD_LLD ARGUMENT...
#
# It links as REAL_LD_LLD would with the same arguments, then matches the
# names of src/start-up.order (`--symbol-ordering-file=`) that this build
# does not have to the ones it has, and links again with those. The names a
# crate's local functions get when its codegen units import them from each
# other end in `.llvm.` and a hash of the unit's code: any change to a unit
# renames them, and the list, made on an earlier build, no longer places
# them. Here `NAME.llvm.<old>` places every `NAME.llvm.<new>` of this build.
#
# Anything missing (no ordering file, no `nm`, no names to match) links once,
# exactly as asked.
set -u
real=$1
shift

order='' out='' prev=''
for a in "$@"; do
    case $a in
    --symbol-ordering-file=*) order=${a#--symbol-ordering-file=} ;;
    esac
    if [ "$prev" = -o ]; then out=$a; fi
    prev=$a
done

if [ -z "$order" ] || [ -z "$out" ] || [ ! -r "$order" ] ||
    ! command -v nm >/dev/null 2>&1 || ! grep -q '\.llvm\.[0-9]*$' "$order"; then
    exec "$real" "$@"
fi

"$real" "$@" || exit

mapped=$(mktemp) || exit 0
trap 'rm -f "$mapped"' EXIT
# Exit status 3: every name was found as it is; the first link stands.
nm --defined-only "$out" 2>/dev/null | awk -v order="$order" '
    {
        name = $NF
        have[name] = 1
        if (name ~ /\.llvm\.[0-9]+$/) {
            base = name
            sub(/\.llvm\.[0-9]+$/, "", base)
            alias[base] = (base in alias) ? alias[base] " " name : name
        }
    }
    END {
        matched = 0
        while ((getline line < order) > 0) {
            if (line in have || line !~ /\.llvm\.[0-9]+$/) {
                emit(line)
                continue
            }
            base = line
            sub(/\.llvm\.[0-9]+$/, "", base)
            if (!(base in alias)) continue
            n = split(alias[base], names, " ")
            for (i = 1; i <= n; i++) emit(names[i])
            matched++
        }
        exit (matched > 0 ? 0 : 3)
    }
    function emit(name) {
        if (!(name in done)) {
            done[name] = 1
            print name
        }
    }' >"$mapped"
case $? in
0) ;;
*) exit 0 ;;
esac

for a in "$@"; do
    shift
    case $a in
    --symbol-ordering-file=*) set -- "$@" "--symbol-ordering-file=$mapped" ;;
    *) set -- "$@" "$a" ;;
    esac
done
"$real" "$@"
