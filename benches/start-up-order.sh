#!/usr/bin/env bash
# Regenerates src/start-up.order: the functions `berth serve` and `berth edge`
# run from start until they are idle, which release builds lay out together
# with lld (build.rs; benches/README.md, "Idle memory"). Run it after a change
# of dependencies or of what start-up does; it needs valgrind and python3.
#
# Two builds are traced, because their functions' names differ: the one
# `cargo build --release` makes, and the one `cargo bench` measures (built
# with the dev-dependencies' features).
#
#   benches/start-up-order.sh            # a few minutes after a release build
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

trace() {
    local label=$1
    shift
    # Linked without an ordering, so the list is not shaped by an old one.
    BERTH_LINK_ORDER=0 cargo build --release "$@"
    local bin=$target/release/berth
    for role in serve edge; do
        case $role in
        serve) args=(serve --listen 127.0.0.1:0 --data-dir "$work/data-$label") ;;
        edge) args=(edge --listen 127.0.0.1:0 --cache-dir "$work/cache-$label" --upstream http://127.0.0.1:9) ;;
        esac
        # Start, then idle: under valgrind start-up takes a few seconds.
        timeout -s TERM 30 valgrind --tool=callgrind --demangle=no --dump-instr=no \
            --callgrind-out-file="$work/$label.$role.out" "$bin" "${args[@]}" \
            >"$work/$label.$role.log" 2>&1 || true
        test -s "$work/$label.$role.out" || { cat "$work/$label.$role.log"; exit 1; }
    done
    nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' >"$work/$label.text"
}

trace release --bin berth
trace bench --bench compare
python3 - "$work" >src/start-up.order <<'PY'
import re, sys
work = sys.argv[1]
seen = set()
for label in ("release", "bench"):
    text = set(open(f"{work}/{label}.text").read().split())
    for role in ("serve", "edge"):
        for line in open(f"{work}/{label}.{role}.out", errors="replace"):
            m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
            if m and m.group(1) in text and m.group(1) not in seen:
                seen.add(m.group(1))
                print(m.group(1))
PY
echo "src/start-up.order: $(wc -l <src/start-up.order) functions"
