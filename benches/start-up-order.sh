#!/usr/bin/env bash
# Regenerates src/start-up.order: the functions `berth serve` and `berth edge`
# run from start until they are idle (health checks, a first /v2/ and, for
# the registry, two projects created through the admin API), which release
# builds lay out together with lld (build.rs; benches/README.md, "Idle
# memory"); then, after all of those, the functions a pull runs that start-up
# does not (an image pushed, its manifest and blobs fetched anonymously and
# with a bearer token); last, the functions an edge runs when 32 clients pull
# an image through it at once, cold and then warm (workload 6's shape). So
# serving pulls touches a few pages of code, not a page here and there over
# the whole executable. Run it after a change of code in the request path, of
# dependencies, of what start-up does, or a move of code between modules:
# release links match the names thin LTO renames with every edit (`.llvm.`
# suffixes; src/ld-order.sh), but new functions, and functions renamed
# otherwise, are laid out anywhere until this runs again. It needs valgrind,
# curl and python3, and for its native pass perf.
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

# A free port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Pushes a small image to the two projects `serve` made, then pulls it as
# containerd does: manifests by tag and by digest, anonymously from the public
# project and with a bearer token from the private one, blobs whole and by range.
pulls() {
    local url=$1 admin=admin:StartUp0rder
    local accept='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*'
    printf '{}' >"$work/config"
    head -c 65536 /dev/urandom >"$work/layer"
    local config layer
    config=sha256:$(sha256sum "$work/config" | cut -d' ' -f1)
    layer=sha256:$(sha256sum "$work/layer" | cut -d' ' -f1)
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":65536}]}' \
        "$config" "$layer" >"$work/manifest"
    local manifest
    manifest=sha256:$(sha256sum "$work/manifest" | cut -d' ' -f1)
    for repo in library/app team/app; do
        for blob in config layer; do
            local digest=$config
            [ "$blob" = layer ] && digest=$layer
            curl -sS -u "$admin" -X POST --data-binary "@$work/$blob" \
                -H 'Content-Type: application/octet-stream' \
                "$url/v2/$repo/blobs/uploads/?digest=$digest" >/dev/null 2>&1 || true
        done
        curl -sS -u "$admin" -X PUT --data-binary "@$work/manifest" \
            -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
            "$url/v2/$repo/manifests/v1" >/dev/null 2>&1 || true
    done
    local token
    token=$(curl -sS -u "$admin" "$url/v2/token?scope=repository:team/app:pull" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' 2>/dev/null || true)
    for _ in 1 2 3; do
        for ref in v1 "$manifest"; do
            curl -sS -H "Accept: $accept" "$url/v2/library/app/manifests/$ref" >/dev/null 2>&1 || true
            curl -sS -I -H "Accept: $accept" "$url/v2/library/app/manifests/$ref" >/dev/null 2>&1 || true
            curl -sS -H "Accept: $accept" -H "Authorization: Bearer $token" \
                "$url/v2/team/app/manifests/$ref" >/dev/null 2>&1 || true
        done
        curl -sS "$url/v2/library/app/blobs/$layer" >/dev/null 2>&1 || true
        curl -sS -H 'Range: bytes=0-1023' "$url/v2/library/app/blobs/$layer" >/dev/null 2>&1 || true
        curl -sS -H "Authorization: Bearer $token" "$url/v2/team/app/blobs/$config" >/dev/null 2>&1 || true
    done
}

# Pulls an image of three 1 MiB layers through the traced edge as workload 6
# does: 32 clients at once, each the manifest by tag, then the config and the
# layers in parallel; cold (the edge fills from its origin, the others follow
# the fills), then warm (served from the cache).
edge_pulls() {
    local url=$1 origin=$2 admin=admin:StartUp0rder
    printf '{"architecture":"amd64","os":"linux"}' >"$work/econfig"
    local layers=() digests=() size
    for i in 1 2 3; do
        head -c 1048576 /dev/urandom >"$work/elayer$i"
        layers+=("$work/elayer$i")
    done
    for f in "$work/econfig" "${layers[@]}"; do
        local d
        d=sha256:$(sha256sum "$f" | cut -d' ' -f1)
        digests+=("$d")
        curl -sS -u "$admin" -X POST --data-binary "@$f" \
            -H 'Content-Type: application/octet-stream' \
            "$origin/v2/library/edge/blobs/uploads/?digest=$d" >/dev/null 2>&1 || true
    done
    size=$(stat -c %s "$work/econfig")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[' \
        "${digests[0]}" "$size" >"$work/emanifest"
    for i in 1 2 3; do
        [ "$i" -gt 1 ] && printf ',' >>"$work/emanifest"
        printf '{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":1048576}' \
            "${digests[$i]}" >>"$work/emanifest"
    done
    printf ']}' >>"$work/emanifest"
    curl -sS -u "$admin" -X PUT --data-binary "@$work/emanifest" \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        "$origin/v2/library/edge/manifests/v1" >/dev/null 2>&1 || true
    local accept='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*'
    for _ in cold warm; do
        # Waits for these clients only: the origin and the traced edge are
        # this shell's children too.
        local clients=()
        for _ in $(seq 32); do
            (
                curl -sS -H "Accept: $accept" "$url/v2/library/edge/manifests/v1" >/dev/null 2>&1 || true
                for d in "${digests[@]}"; do
                    curl -sS "$url/v2/library/edge/blobs/$d" >/dev/null 2>&1 &
                done
                wait
            ) &
            clients+=($!)
        done
        wait "${clients[@]}"
    done
}

trace() {
    local label=$1
    shift
    # Linked without an ordering, so the list is not shaped by an old one.
    BERTH_LINK_ORDER=0 cargo build --release "$@"
    local bin=$target/release/berth
    for role in serve edge pull edgepull; do
        local port
        port=$(free_port)
        local limit=40
        case $role in
        serve | pull) args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data-$label") ;;
        edge) args=(edge --listen "127.0.0.1:$port" --cache-dir "$work/cache-$label" --upstream http://127.0.0.1:9) ;;
        edgepull)
            # The edge's origin: the same build, not traced.
            local origin_port origin_pid origin
            origin_port=$(free_port)
            BERTH_ADMIN_PASSWORD=StartUp0rder BERTH_AUTH_BCRYPT_COST=4 "$bin" serve \
                --listen "127.0.0.1:$origin_port" --data-dir "$work/origin-$label" \
                >"$work/$label.origin.log" 2>&1 &
            origin_pid=$!
            origin=http://127.0.0.1:$origin_port
            for _ in $(seq 60); do
                curl -fsS "$origin/healthz" >/dev/null 2>&1 && break
                sleep 0.2
            done
            curl -sS -u admin:StartUp0rder -H 'Content-Type: application/json' \
                -d '{"name":"library","public":true}' "$origin/api/v1/projects" >/dev/null 2>&1 || true
            args=(edge --listen "127.0.0.1:$port" --cache-dir "$work/edgecache-$label" --upstream "$origin")
            limit=90
            ;;
        esac
        # Start, answer what a new server is asked (health checks, a
        # client's first /v2/, an operator creating projects), then idle;
        # under valgrind start-up takes a few seconds.
        BERTH_ADMIN_PASSWORD=StartUp0rder BERTH_AUTH_BCRYPT_COST=4 \
            timeout -s TERM "$limit" valgrind --tool=callgrind --demangle=no --dump-instr=no \
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
        if [ "$role" = pull ]; then
            pulls "$url"
        fi
        if [ "$role" = edgepull ]; then
            edge_pulls "$url" "$origin"
            kill "$origin_pid"
        fi
        wait || true
        test -s "$work/$label.$role.out" || { cat "$work/$label.$role.log"; exit 1; }
    done
    nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' >"$work/$label.text"
}

trace release --bin berth
trace bench --bench compare
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
out, seen, pulled, edge_pulled = [], set(), [], []
for label in ("release", "bench"):
    text = set(open(f"{work}/{label}.text").read().split())
    run = {}
    for role in ("serve", "edge", "pull", "edgepull"):
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
    # Then what serving pulls runs besides: after every start-up function,
    # so an idle process touches no more pages than before.
    pulled.append([n for n in run["pull"] if n not in serve])
    edge_pulled.append([n for n in run["edgepull"] if n not in edge])
rest = []
for names in pulled + edge_pulled:
    for name in names:
        if name not in seen:
            seen.add(name)
            rest.append(name)
open(f"{work}/start-up", "w").write("".join(n + "\n" for n in out))
open(f"{work}/pulls", "w").write("".join(n + "\n" for n in rest))
PY
cat "$work/start-up" "$work/pulls" >src/start-up.order

# What the traces miss. valgrind hides CPU features (SHA-NI: the digest's
# fast path never runs under it) and runs start-up about 50 times slower (a
# task done or not when its handle is dropped takes a different path), so
# the ordered build is started natively as the bench starts it, with
# perf's page-fault tracepoint: a fault in code outside the start-up part
# names a function start-up runs that the list lays out elsewhere. Those
# move into the start-up part and the build is linked again, until no such
# fault is left (at most six rounds; a fault shows only the first function
# start-up runs in a window of code the kernel maps at once). Skipped without perf.
native() {
    local label=$1
    shift
    if ! command -v perf >/dev/null || ! perf list 2>/dev/null | grep exceptions:page_fault_user >/dev/null; then
        echo "start-up-order: no perf with the page-fault tracepoint; the native pass is skipped"
        return
    fi
    local round
    for round in 1 2 3 4 5 6; do
        cargo build --release "$@"
        local bin=$target/release/berth
        for role in serve edge; do
            local port url
            port=$(free_port)
            url=http://127.0.0.1:$port
            case $role in
            serve) args=(serve --listen "127.0.0.1:$port" --data-dir "$work/native-$label-$round") ;;
            edge) args=(edge --listen "127.0.0.1:$port" --cache-dir "$work/native-cache-$label-$round" --upstream http://127.0.0.1:9) ;;
            esac
            BERTH_ADMIN_PASSWORD=StartUp0rder BERTH_AUTH_BCRYPT_COST=4 BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES=true \
                perf record -q -e exceptions:page_fault_user -o "$work/native.$role.data" -- \
                "$bin" "${args[@]}" >"$work/native.$role.log" 2>&1 &
            local perf_pid=$!
            for _ in $(seq 100); do
                curl -fsS "$url/healthz" >/dev/null 2>&1 && break
                sleep 0.05
            done
            # As the bench does: one kept-alive connection, no Connection header.
            if [ "$role" = serve ]; then
                curl -sS -u admin:StartUp0rder -H 'Content-Type: application/json' \
                    -d '{"name":"library","public":true}' "$url/api/v1/projects" --next \
                    -u admin:StartUp0rder -H 'Content-Type: application/json' \
                    -d '{"name":"team","public":false}' "$url/api/v1/projects" >/dev/null 2>&1 || true
            fi
            sleep 1
            pkill -TERM -P "$perf_pid" || true
            wait "$perf_pid" || true
        done
        local moved
        moved=$(python3 - "$work" "$bin" <<'PY'
import bisect, os, re, subprocess, sys
work, binary = sys.argv[1], os.path.realpath(sys.argv[2])
start_up = open(f"{work}/start-up").read().split()
listed = set(start_up)
pulls = open(f"{work}/pulls").read().split()
text = None
for line in subprocess.check_output(["readelf", "-SW", binary], text=True).splitlines():
    m = re.match(r"\s*\[\s*\d+\]\s+\.text\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
    if m:
        text = [int(g, 16) for g in m.groups()]
syms = []
for line in subprocess.check_output(["nm", "-n", "--defined-only", binary], text=True).splitlines():
    f = line.split()
    if len(f) == 3 and f[1] in "tTwW":
        syms.append((int(f[0], 16), f[2]))
addrs = [a for a, _ in syms]
found = []
for role in ("serve", "edge"):
    script = subprocess.run(
        ["perf", "script", "-i", f"{work}/native.{role}.data", "--show-mmap-events", "-F", "trace"],
        capture_output=True, text=True).stdout
    maps = []
    for line in script.splitlines():
        m = re.search(r"MMAP2? .*\[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ (0x[0-9a-f]+) .*\]: r-xp (\S+)$", line)
        if m and os.path.realpath(m.group(4)) == binary:
            maps.append([int(g, 16) for g in m.groups()[:3]])
        m = re.search(r"address=(0x[0-9a-f]+)", line)
        if not m:
            continue
        a = int(m.group(1), 16)
        for base, length, pgoff in maps:
            if base <= a < base + length:
                v = a - base + pgoff - text[1] + text[0]
                i = bisect.bisect_right(addrs, v) - 1
                if 0 <= i and text[0] <= v < text[0] + text[2]:
                    name = syms[i][1]
                    if name not in listed:
                        listed.add(name)
                        found.append(name)
open(f"{work}/start-up", "w").write("".join(n + "\n" for n in start_up + found))
moved = set(found)
open(f"{work}/pulls", "w").write("".join(n + "\n" for n in pulls if n not in moved))
print(len(found))
PY
)
        cat "$work/start-up" "$work/pulls" >src/start-up.order
        echo "start-up-order: $label, native round $round: $moved functions moved into the start-up part"
        if [ "$moved" = 0 ]; then
            break
        fi
    done
}

native release --bin berth
native bench --bench compare
echo "src/start-up.order: $(wc -l <src/start-up.order) functions"
