#!/usr/bin/env bash
# Regenerates src/start-up.order, the functions `berth serve` and `berth edge`
# run from start until they are idle, which release builds lay out together
# with lld (build.rs; benches/README.md, "Idle memory"). Run it after a change
# of dependencies or of what start-up does; it needs valgrind and python3.
#
#   benches/start-up-order.sh            # about two minutes
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
# Linked without an ordering, so the list is not shaped by an old one.
BERTH_LINK_ORDER=0 cargo build --release --bin berth
bin=$target/release/berth
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for role in serve edge; do
    case $role in
    serve) args=(serve --listen 127.0.0.1:0 --data-dir "$work/$role") ;;
    edge) args=(edge --listen 127.0.0.1:0 --cache-dir "$work/$role" --upstream http://127.0.0.1:9) ;;
    esac
    # Start, then idle: under valgrind start-up takes a few seconds.
    timeout -s TERM 30 valgrind --tool=callgrind --demangle=no --dump-instr=no \
        --callgrind-out-file="$work/$role.out" "$bin" "${args[@]}" >"$work/$role.log" 2>&1 || true
    test -s "$work/$role.out" || { cat "$work/$role.log"; exit 1; }
done
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' >"$work/text"
python3 - "$work" >src/start-up.order <<'PY'
import re, sys
work = sys.argv[1]
text = set(open(f"{work}/text").read().split())
seen = set()
for role in ("serve", "edge"):
    for line in open(f"{work}/{role}.out", errors="replace"):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
        if m and m.group(1) in text and m.group(1) not in seen:
            seen.add(m.group(1))
            print(m.group(1))
PY
echo "src/start-up.order: $(wc -l <src/start-up.order) functions"
