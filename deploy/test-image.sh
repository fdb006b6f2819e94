#!/usr/bin/env bash
# The image test: builds deploy/Dockerfile with podman from this checkout and runs the image the
# way deploy/kubernetes/ runs it. Steps (each timed; the summary at the end):
#   1. podman (installed with apt-get when missing and root), configured for this kind of host
#   2. the base image: $BASE_IMAGE if given; else the official python:3.11-slim-bookworm if it can
#      be pulled; else Debian bookworm made with debootstrap from the host's apt mirror, with the
#      host's CA bundle, and `podman import`-ed (cached in $IMALYS_IMAGE_CACHE)
#   3. podman build -f deploy/Dockerfile --build-arg BASE_IMAGE=... -t $IMAGE .   (layers cached)
#   4. `imalys-stac --version` and the demo Job of deploy/kubernetes/base/demo-job.yaml
#   5. the DaskJob of deploy/kubernetes/base/daskjob.yaml as containers: a scheduler, two workers and
#      the runner, with the manifest's arguments, environment and volume mounts (the PVCs and the
#      ConfigMap as host folders), on a podman network where the scheduler answers to its Service
#      name; one worker is killed during reduce; the COGs must equal those of the same chain run
#      in-process (no scheduler) pixel for pixel
#   6. the catalog and results servers of deploy/kubernetes/base/stac-browser.yaml and
#      results.yaml (their wait-for-catalog init containers first), read through the published
#      ports: the catalog with pystac, an archive member and a COG by HTTP range, the STAC API
#      with pystac-client, and a result fetched byte for byte
# Exit status: 0 passed, 1 failed, 77 skipped (podman cannot run here; the reason is printed).
#
#   deploy/test-image.sh                         # as CI runs it (make test-image)
#   BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm deploy/test-image.sh
#   IMALYS_IMAGE_KEEP=1 deploy/test-image.sh     # keep the containers' folders for a look
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${IMALYS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imalys-stac-image}
IMAGE=${IMALYS_TEST_IMAGE:-localhost/imalys-stac:test}
PYTHON_BASE=docker.io/library/python:3.11-slim-bookworm
DEBIAN_BASE=localhost/imalys-debian-python:bookworm
SUITE=bookworm  # Python 3.11, as the official image
P=imalys-test-$$  # prefix of this run's containers and network
T0=$(date +%s)
TIMES=()

say() { printf '[test-image %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
skip() { say "SKIP: $*"; exit 77; }
fail() { say "FAIL: $*"; exit 1; }
step() { TIMES+=("$(printf '%-28s %4ss' "$STEP" "$(( $(date +%s) - STEP_T ))")"); STEP=$1; STEP_T=$(date +%s); say "== $1"; }
STEP=start; STEP_T=$T0
trap 'say "FAIL: line $LINENO: $BASH_COMMAND exited with $?"' ERR

# ------------------------------------------------------------------------------------ 1. podman
step podman
if ! command -v podman >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing podman (apt-get)"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc; } >"$CACHE.apt.log" 2>&1 \
            || skip "podman is not installed and apt-get could not install it (see $CACHE.apt.log)"
    else
        skip "podman is not installed (apt-get install podman runc, as root)"
    fi
fi
mkdir -p "$CACHE"
# crun refuses hybrid cgroup hierarchies and systemd is not the init of every host: runc and
# cgroupfs work everywhere; containers inherit ulimits that must not exceed the host's hard ones.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=1048576
nofile=$(( nofile < 65536 ? nofile : 65536 )); nproc=$(( nproc < 32768 ? nproc : 32768 ))
runtime=
if command -v runc >/dev/null 2>&1; then runtime='runtime = "runc"'; fi
cat >"$CACHE/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
$runtime
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$CACHE/containers.conf"
podman info >"$CACHE/podman-info.log" 2>&1 || skip "podman cannot run here: $(tail -1 "$CACHE/podman-info.log")"

# -------------------------------------------------------------------------------- 2. base image
step "base image"
debian_base() {
    # Debian with python3 + venv, the host's CA bundle (HTTPS through an intercepting proxy works
    # in the build as on the host) and pip told to use it; kept as a tarball, so a wiped podman
    # store costs an import, not a debootstrap
    local tarball="$CACHE/debian-python-$SUITE.tar" rootfs="$CACHE/rootfs-$SUITE"
    if podman image exists "$DEBIAN_BASE"; then return; fi
    if [ ! -f "$tarball" ]; then
        if [ ! -f "$rootfs/.debootstrap-done" ]; then
            if ! command -v debootstrap >/dev/null 2>&1; then
                [ "$(id -u)" = 0 ] || skip "no base image: $PYTHON_BASE cannot be pulled and debootstrap is not installed"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >>"$CACHE.apt.log" 2>&1 \
                    || skip "no base image: $PYTHON_BASE cannot be pulled and debootstrap cannot be installed"
            fi
            local mirror
            mirror=$({ grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true; } \
                     | awk '{print $2}' | head -1)
            mirror=${mirror:-http://deb.debian.org/debian}
            say "debootstrap $SUITE from $mirror (a few minutes, once)"
            rm -rf "$rootfs"
            debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$rootfs" "$mirror" \
                >"$CACHE/debootstrap.log" 2>&1 || { rm -rf "$rootfs"; skip "no base image: debootstrap failed (see $CACHE/debootstrap.log)"; }
            touch "$rootfs/.debootstrap-done"
        fi
        for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
            if [ -f "$bundle" ]; then cp "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"; break; fi
        done
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
        rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin "$rootfs/.debootstrap-done"
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs" &  # many small files: slow on a busy disk, and nothing waits for it
    fi
    podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tarball" "$DEBIAN_BASE" >"$CACHE/import.log" 2>&1 \
        || fail "podman import of the Debian base failed (see $CACHE/import.log)"
}
if [ -n "${BASE_IMAGE:-}" ]; then
    podman image exists "$BASE_IMAGE" || podman pull -q "$BASE_IMAGE" >/dev/null || fail "cannot pull BASE_IMAGE=$BASE_IMAGE"
elif podman image exists "$PYTHON_BASE" || timeout 120 podman pull -q "$PYTHON_BASE" >/dev/null 2>&1; then
    BASE_IMAGE=$PYTHON_BASE
else
    say "$PYTHON_BASE cannot be pulled (no Docker Hub here?): a Debian $SUITE base instead"
    debian_base
    BASE_IMAGE=$DEBIAN_BASE
fi
# a container that cannot start at all is this host's limit, not the image's fault
podman run --rm --network none "$BASE_IMAGE" python3 -c 'import venv' >"$CACHE/run-check.log" 2>&1 \
    || skip "podman cannot run a container here: $(tail -1 "$CACHE/run-check.log")"
say "base image $BASE_IMAGE"

# ------------------------------------------------------------------------------------- 3. build
step build
# the README's command, with the base image and a wheelhouse kept between builds (the layers are
# cached by podman: a rerun without changes rebuilds nothing, a code change only the wheel)
mkdir -p "$CACHE/wheels"
say "podman build -f deploy/Dockerfile --build-arg BASE_IMAGE=$BASE_IMAGE -t $IMAGE ."
(cd "$REPO" && podman build -f deploy/Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg WHEELHOUSE=/wheelhouse -v "$CACHE/wheels:/wheelhouse" -t "$IMAGE" .) >"$CACHE/build.log" 2>&1 \
    || { tail -30 "$CACHE/build.log" >&2; fail "podman build failed (log: $CACHE/build.log)"; }

# ----------------------------------------------------------------------- the volumes and the pods
DATA=$(mktemp -d "${TMPDIR:-/var/tmp}/imalys-test-image.XXXXXX")
cleanup() {
    local ids
    ids=$(podman ps -aq --filter "name=^$P-" 2>/dev/null || true)
    [ -z "$ids" ] || podman rm -f -t 0 $ids >/dev/null 2>&1 || true
    podman network rm -f "$P" >/dev/null 2>&1 || true
    if [ -n "${IMALYS_IMAGE_KEEP:-}" ]; then say "kept $DATA"; else rm -rf "$DATA"; fi
}
trap cleanup EXIT
# the Kubernetes volumes as folders: the run's, and the in-process reference run's own catalog,
# work and results (it reads the same archives); owned by uid 1000 like the pods' fsGroup
VOL_archives=$DATA/archives VOL_catalog=$DATA/catalog VOL_work=$DATA/work VOL_results=$DATA/results
mkdir -p "$DATA"/{archives,catalog,work,results} "$DATA"/ref/{catalog,work,results}
chown -R 1000:1000 "$DATA" 2>/dev/null || chmod -R a+rwx "$DATA"
# the ConfigMap of base/kustomization.yaml's configMapGenerator: its folder
CONFIGMAP_imalys_chains=$REPO/deploy/kubernetes/base/chains
podman run --rm --network none -v "$REPO/deploy:/deploy:ro" --entrypoint python "$IMAGE" \
    /deploy/kube2podman.py /deploy/kubernetes/base/{demo-job,stac-browser,results}.yaml \
    /deploy/kubernetes/runs/daskjob/daskjob.yaml >"$DATA/pods.sh" || fail "kube2podman.py could not read the manifests"
# shellcheck disable=SC1091
. "$DATA/pods.sh"
logs() { podman logs "$1" 2>&1 | tail -"${2:-40}" >&2; }

# --------------------------------------------------------------------------- 4. version and demo
step "version, demo job"
want="imalys-stac $(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml")"
got=$(podman run --rm "$IMAGE" --version) || fail "imalys-stac --version failed in the image"
[ "$got" = "$want" ] || fail "the image says '$got', the checkout '$want'"
say "$got"
c_imalys_demo_demo
podman run --rm --name "$P-demo" "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >"$DATA/demo.log" 2>&1 \
    || { tail -30 "$DATA/demo.log" >&2; fail "the demo job's demo container failed"; }
for f in bestof_summer.tif bestof_autumn.tif bestof_summer.png bestof_autumn.png; do
    [ -s "$DATA/work/demo/results/$f" ] || fail "the demo did not write results/$f"
done
c_imalys_demo_publish
podman run --rm --name "$P-publish" "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >"$DATA/publish.log" 2>&1 \
    || { tail -30 "$DATA/publish.log" >&2; fail "the demo job's publish container failed"; }
[ -s "$DATA/archives/frames/bounding-box.gpkg" ] || fail "the demo job put no frame where the chain (base/chains/chain.txt) expects it"
say "demo: $(ls "$DATA/archives" | grep -c '\.tar$') archives and the frame on the archives volume"

# the init containers of the catalog and results servers wait while there is nothing to serve
c_imalys_stac_browser_wait_for_catalog
podman run -d --name "$P-wait-catalog" "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >/dev/null
c_imalys_results_wait_for_results
podman run -d --name "$P-wait-results" "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >/dev/null

# ------------------------------------------------------------------------- 5. the chain, in-process
step "chain in-process"
# the DaskJob's runner container without a scheduler (IMALYS_SCHEDULER empty: threads in-process),
# with its own catalog, work and results folders: the reference for the cluster's COGs
VOL_catalog=$DATA/ref/catalog VOL_work=$DATA/ref/work VOL_results=$DATA/ref/results c_imalys_seasons_job
podman run --rm --name "$P-reference" "${OPTS[@]}" -e IMALYS_SCHEDULER= "$IMAGE" "${ARGS[@]}" >"$DATA/reference.log" 2>&1 \
    || { tail -30 "$DATA/reference.log" >&2; fail "the chain failed in-process"; }
! grep -q "dask: tcp://" "$DATA/reference.log" || fail "the reference run used a Dask scheduler"

# ---------------------------------------------------- 5. the chain on a scheduler and two workers
step "chain on the cluster"
# One network, where the scheduler also answers to the name of the Service the operator makes for
# it (<DaskJob name>-scheduler); workers get what the operator sets in worker pods.
podman network create "$P" >/dev/null
export DASK_SCHEDULER_ADDRESS=tcp://imalys-seasons-scheduler:8786
c_imalys_seasons_scheduler
podman run -d --name "$P-scheduler" --network "$P" --network-alias imalys-seasons-scheduler "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >/dev/null
# its readinessProbe: GET /health on the dashboard port
ready() { podman exec "$P-scheduler" python -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8787/health", timeout=2)' 2>/dev/null; }
for _ in $(seq 60); do ready && break; sleep 1; done
ready || { logs "$P-scheduler"; fail "the scheduler did not become ready"; }
for i in 0 1; do
    export DASK_WORKER_NAME=imalys-seasons-default-worker-$i
    c_imalys_seasons_worker
    podman run -d --name "$P-worker-$i" --network "$P" -e DASK_WORKER_NAME -e DASK_SCHEDULER_ADDRESS "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >/dev/null
done
# the runner starts once both workers have joined (so the kill below leaves one that works on)
podman exec "$P-scheduler" python -c 'from distributed import Client
with Client("tcp://127.0.0.1:8786", timeout=60) as c: c.wait_for_workers(2, timeout=120)' \
    || { logs "$P-worker-0"; logs "$P-worker-1"; fail "the workers did not join the scheduler"; }
c_imalys_seasons_job
podman run -d --name "$P-runner" --network "$P" -e DASK_SCHEDULER_ADDRESS "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >/dev/null
# kill one worker during the first run's reduce, once the scheduler has given it tasks
killed=
for _ in $(seq 1200); do
    if podman logs "$P-runner" 2>&1 | grep '── reduce' >/dev/null; then
        podman exec "$P-scheduler" python -c 'import sys, time
from distributed import Client
with Client("tcp://127.0.0.1:8786", timeout=30) as c:
    for _ in range(600):
        names = {a: w["name"] for a, w in c.scheduler_info(n_workers=-1)["workers"].items()}
        busy = [a for a, keys in c.processing().items() if keys and names.get(a) == sys.argv[1]]
        if busy:
            print(f"worker {sys.argv[1]} has {len(c.processing()[busy[0]])} task(s): killing it", file=sys.stderr)
            break
        time.sleep(0.1)' imalys-seasons-default-worker-1 || true
        podman kill "$P-worker-1" >/dev/null && killed=1
        break
    fi
    [ "$(podman inspect -f '{{.State.Running}}' "$P-runner")" = true ] || break
    sleep 0.5
done
status=$(podman wait "$P-runner")
podman logs "$P-runner" >"$DATA/runner.log" 2>&1
[ "$status" = 0 ] || { tail -40 "$DATA/runner.log" >&2; fail "the runner exited with $status"; }
[ -n "$killed" ] || { tail -40 "$DATA/runner.log" >&2; fail "the runner never reached reduce"; }
grep -q "dask: tcp://imalys-seasons-scheduler:8786, 2 worker(s)" "$DATA/runner.log" \
    || { tail -40 "$DATA/runner.log" >&2; fail "the runner did not use the scheduler and its two workers"; }
grep "died or lost contact" "$DATA/runner.log" >&2 \
    || { tail -40 "$DATA/runner.log" >&2; fail "the runner did not notice the killed worker"; }

step "compare COGs"
podman run --rm --network none -v "$DATA/results:/cluster:ro" -v "$DATA/ref/results:/reference:ro" --entrypoint python "$IMAGE" -c '
import math
import numpy as np
import rasterio
from rio_cogeo.cogeo import cog_validate


def same(p, q):  # NaN nodata equals NaN nodata
    return p == q or (isinstance(p, float) and isinstance(q, float) and math.isnan(p) and math.isnan(q))


for season in ("summer", "autumn"):
    a, b = f"/cluster/bestof_{season}.tif", f"/reference/bestof_{season}.tif"
    valid, errors, _ = cog_validate(a, quiet=True)
    assert valid, f"{a}: not a valid COG: {errors}"
    with rasterio.open(a) as x, rasterio.open(b) as y:
        for key in ("crs", "transform", "width", "height", "count", "dtypes", "nodata", "descriptions"):
            assert same(getattr(x, key), getattr(y, key)), f"{season}: {key} {getattr(x, key)} != {getattr(y, key)}"
        assert x.overviews(1) == y.overviews(1), season
        for level in [None, *range(len(x.overviews(1)))]:
            with rasterio.open(a, overview_level=level) as xo, rasterio.open(b, overview_level=level) as yo:
                p, q = xo.read(), yo.read()
                equal = (p == q) | (np.isnan(p) & np.isnan(q)) if p.dtype.kind == "f" else p == q
                assert equal.all(), f"{season}, overview {level}: {(~equal).sum()} of {equal.size} pixels differ"
        print(f"bestof_{season}.tif: {x.count} bands {x.width}x{x.height}, {len(x.overviews(1))} overviews, "
              "every pixel equal to the in-process run")
' >&2 || fail "the cluster's COGs differ from the in-process run"

# ------------------------------------------------------------- 6. the catalog and results servers
step "serve"
# the init containers: waiting before the catalog and the results existed, done now
for w in "$P-wait-catalog" "$P-wait-results"; do
    for _ in $(seq 30); do [ "$(podman inspect -f '{{.State.Running}}' "$w")" = true ] || break; sleep 1; done
    [ "$(podman inspect -f '{{.State.Running}} {{.State.ExitCode}}' "$w")" = "false 0" ] || { logs "$w"; fail "$w did not end once there was something to serve"; }
    podman logs "$w" 2>&1 | grep "^waiting for" >/dev/null || fail "$w did not wait while there was nothing to serve"
done
c_imalys_stac_browser_catalog
podman run -d --name "$P-catalog" -p 127.0.0.1::8000 -p 127.0.0.1::8001 "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >/dev/null
c_imalys_results_results
podman run -d --name "$P-results" -p 127.0.0.1::8002 "${OPTS[@]}" "$IMAGE" "${ARGS[@]}" >/dev/null
port() { podman port "$1" "$2/tcp" | sed -n '1s/.*://p'; }
catalog=http://127.0.0.1:$(port "$P-catalog" 8000) api=http://127.0.0.1:$(port "$P-catalog" 8001)
results=http://127.0.0.1:$(port "$P-results" 8002)
say "catalog $catalog, STAC API $api, results $results"
# The checks, in a container of the image; first from the host's network through the published
# ports (as your browser or `curl` would), then the STAC API from inside the catalog container's
# network: its links are absolute, naming the port it listens on, so it is meant to be published
# under that same port (compose: 8001:8001; Kubernetes: port-forward 8001).
cat >"$DATA/check-serve.py" <<'PY'
import hashlib
import sys
import time
import urllib.request

import numpy as np
import pystac
import pystac_client
import rasterio

catalog, api, results = sys.argv[1:]


def get(url, headers=None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
        return r.status, r.read()


def wait(url):  # the readinessProbe of the container
    for _ in range(120):
        try:
            return get(url)
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} never answered")


wait(f"{catalog}/catalog/catalog.json")
cat = pystac.Catalog.from_file(f"{catalog}/catalog/catalog.json")
items = list(cat.get_items(recursive=True))
assert items, "the served catalog holds no item"
if api == "-":
    item = items[0]
    asset = next(a for a in item.assets.values() if a.href.lower().endswith((".tif", ".tiff")))
    href = asset.get_absolute_href()
    assert href.startswith(catalog), href
    status, head = get(href, {"Range": "bytes=0-1023"})
    assert status == 206 and len(head) == 1024, (status, len(head))
    # the member read through the server (GDAL /vsicurl/, byte ranges) equals the member read in place
    member = href[len(catalog):].split(".tar/", 1)
    local = f"/vsitar//data{member[0]}.tar/{member[1]}"
    with rasterio.open(f"/vsicurl/{href}") as remote, rasterio.open(local) as direct:
        assert np.array_equal(remote.read(1), direct.read(1)), href
    print(f"catalog: {len(items)} items, {item.id}/{href.rsplit('/', 1)[1]} read by range requests equals the archive member")
else:
    wait(api)
    found = list(pystac_client.Client.open(api).search(max_items=None).items())
    assert {i.id for i in found} == {i.id for i in items}, (len(found), len(items))
    print(f"STAC API: the search returns the same {len(found)} items")
if results != "-":
    wait(f"{results}/results/catalog.json")
    res = pystac.Catalog.from_file(f"{results}/results/catalog.json")
    ids = {i.id for i in res.get_items(recursive=True)}
    assert any("bestof_summer" in i for i in ids), ids
    status, body = get(f"{results}/results/bestof_summer.tif")
    with open("/data/results/bestof_summer.tif", "rb") as f:
        assert hashlib.sha256(body).digest() == hashlib.sha256(f.read()).digest(), "the fetched COG differs from the file"
    print(f"results: {len(ids)} items; bestof_summer.tif fetched ({len(body)} bytes) equals the file")
PY
check_serve() {  # NETWORK CATALOG_URL API_URL|- RESULTS_URL|-
    local network=$1
    shift
    podman run --rm --network "$network" -v "$DATA/archives:/data/archives:ro" -v "$DATA/results:/data/results:ro" \
        -v "$DATA/check-serve.py:/check-serve.py:ro" --entrypoint python "$IMAGE" /check-serve.py "$@" >&2 \
        || { logs "$P-catalog"; logs "$P-results"; fail "serving failed"; }
}
check_serve host "$catalog" - "$results"
check_serve "container:$P-catalog" http://127.0.0.1:8000 http://127.0.0.1:8001 -

step done
say "passed; times:"
for t in "${TIMES[@]:1}"; do say "  $t"; done
say "  total                        $(( $(date +%s) - T0 ))s"
