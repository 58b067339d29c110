#!/usr/bin/env bash
# Regenerates src/start-up.order: the functions `berth serve` and `berth edge`
# run from start until they are idle (health checks, a first /v2/ and, for
# the registry, two projects created through the admin API), which release
# builds lay out together with lld (build.rs; benches/README.md, "Idle
# memory"). Run it after a change of dependencies, of what start-up does, or
# a move of code between modules (names change with it); it needs valgrind,
# curl and python3.
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
        local port
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        case $role in
        serve) args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data-$label") ;;
        edge) args=(edge --listen "127.0.0.1:$port" --cache-dir "$work/cache-$label" --upstream http://127.0.0.1:9) ;;
        esac
        # Start, answer what a new server is asked (health checks, a
        # client's first /v2/, an operator creating projects), then idle;
        # under valgrind start-up takes a few seconds.
        BERTH_ADMIN_PASSWORD=StartUp0rder BERTH_AUTH_BCRYPT_COST=4 \
            timeout -s TERM 40 valgrind --tool=callgrind --demangle=no --dump-instr=no \
            --callgrind-out-file="$work/$label.$role.out" "$bin" "${args[@]}" \
            >"$work/$label.$role.log" 2>&1 &
        local url=http://127.0.0.1:$port
        for _ in $(seq 60); do
            curl -fsS "$url/healthz" >/dev/null 2>&1 && break
            sleep 0.5
        done
        for _ in 1 2 3; do
            curl -sS "$url/healthz" "$url/v2/" >/dev/null 2>&1 || true
        done
        if [ "$role" = serve ]; then
            for p in '{"name":"library","public":true}' '{"name":"team","public":false}'; do
                curl -sS -u admin:StartUp0rder -H 'Content-Type: application/json' \
                    -d "$p" "$url/api/v1/projects" >/dev/null 2>&1 || true
            done
        fi
        wait || true
        test -s "$work/$label.$role.out" || { cat "$work/$label.$role.log"; exit 1; }
    done
    nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' >"$work/$label.text"
}

trace release --bin berth
trace bench --bench compare
python3 - "$work" >src/start-up.order <<'PY'
import re, sys
work = sys.argv[1]
out, seen = [], set()
for label in ("release", "bench"):
    text = set(open(f"{work}/{label}.text").read().split())
    run = {}
    for role in ("serve", "edge"):
        run[role] = []
        for line in open(f"{work}/{label}.{role}.out", errors="replace"):
            m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
            if m and m.group(1) in text:
                run[role].append(m.group(1))
    serve, edge = set(run["serve"]), set(run["edge"])
    # What both run, then what only one does: each role's code in two runs
    # of pages, not spread over the other's.
    for name in run["serve"] + run["edge"]:
        if name in serve and name in edge and name not in seen:
            seen.add(name)
            out.append(name)
    for role in ("serve", "edge"):
        for name in run[role]:
            if name not in seen:
                seen.add(name)
                out.append(name)
print("\n".join(out))
PY
echo "src/start-up.order: $(wc -l <src/start-up.order) functions"
