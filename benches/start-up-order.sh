#!/usr/bin/env bash
# Regenerates src/start-up.order: the functions `berth serve` and `berth edge`
# run from start until they are idle (health checks, a first /v2/ and, for
# the registry, two projects created through the admin API), which release
# builds lay out together with lld (build.rs; benches/README.md, "Idle
# memory"); then, after all of those, the functions a pull runs that start-up
# does not (an image pushed, its manifest and blobs fetched anonymously and
# with a bearer token), so that serving pulls touches a few pages of code and
# not a page here and there over the whole executable. Run it after a change of
# code in the request path, of dependencies, of what start-up does, or a move
# of code between modules (names change with it: the names of a crate's
# functions change with its code); it needs valgrind, curl and python3.
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

trace() {
    local label=$1
    shift
    # Linked without an ordering, so the list is not shaped by an old one.
    BERTH_LINK_ORDER=0 cargo build --release "$@"
    local bin=$target/release/berth
    for role in serve edge pull; do
        local port
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        case $role in
        serve | pull) args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data-$label") ;;
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
        if [ "$role" = pull ]; then
            pulls "$url"
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
out, seen, pulled = [], set(), []
for label in ("release", "bench"):
    text = set(open(f"{work}/{label}.text").read().split())
    run = {}
    for role in ("serve", "edge", "pull"):
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
for names in pulled:
    for name in names:
        if name not in seen:
            seen.add(name)
            out.append(name)
print("\n".join(out))
PY
echo "src/start-up.order: $(wc -l <src/start-up.order) functions"
