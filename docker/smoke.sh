#!/usr/bin/env bash
# From zero to a finished sweep on the Compose stack, and back to nothing: builds both images, prepares data and
# weights on host folders as the images' uid 1000, brings the stack up (Ray head, API with the PostgreSQL
# registry, a worker), submits a tiny sweep with the CLI, checks its Parquet rows and its report, and tears
# everything down. With the CPU worker (the default) the GPU image also joins the cluster as a CPU-only node, which
# Ray allows only when its Python and Ray match the head's. Prints the time of each step and the images' sizes.
# Not part of `make test` (minutes, and it needs dockerd).
#
#   docker/smoke.sh                                    # the pinned public base images (needs a registry)
#   docker/make-local-base.sh && docker/smoke.sh --local   # no registry: Debian stand-ins built with debootstrap
#
# Options (or the same names as environment variables):
#   --base IMAGE          BASE_IMAGE for docker/Dockerfile
#   --postgres IMAGE      POSTGRES_IMAGE for the compose file
#   --local               both from docker/make-local-base.sh (shiftsweep-local-base:bookworm, -postgres:15)
#   --torch-index URL     TORCH_INDEX_URL for both images ("" = PyPI only)
#   --torch-cuda N        the CUDA major version torch must have ("" = a CPU build)
#   --worker cpu|gpu      the worker service: cpu (profile cpu, default) or gpu (needs the NVIDIA runtime)
#   --keep                leave the stack and the work folder up for a look; tear down by hand
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-}
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
TORCH_CUDA=${TORCH_CUDA-}
WORKER=${WORKER:-cpu}
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE_IMAGE=$2; shift 2 ;;
    --postgres) POSTGRES_IMAGE=$2; shift 2 ;;
    --local) BASE_IMAGE=shiftsweep-local-base:bookworm; POSTGRES_IMAGE=shiftsweep-local-postgres:15; shift ;;
    --torch-index) TORCH_INDEX_URL=$2; shift 2 ;;
    --torch-cuda) TORCH_CUDA=$2; shift 2 ;;
    --worker) WORKER=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$WORKER" in cpu|gpu) ;; *) echo "--worker must be cpu or gpu, got $WORKER" >&2; exit 2 ;; esac

if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version --short | grep -q '^v\?2'; then COMPOSE=(docker-compose)
elif [ -x .venv/bin/docker-compose ]; then COMPOSE=(.venv/bin/docker-compose)
else echo "no Compose v2 (docker compose, or docker-compose from the dev extra)" >&2; exit 2; fi

t0=$(date +%s)
step_start=$t0
step() { local now; now=$(date +%s); printf '[%4ds] %s\n' "$((now - t0))" "$*"; step_start=$now; }
took() { printf '       took %ds\n' "$(($(date +%s) - step_start))"; }
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.2f GB", $1 / 1e9}'; }
logs=$(mktemp -d /tmp/shiftsweep-smoke-logs.XXXXXX)
# The build's own output goes to a log, shown only when the build fails.
build() {
  local log=$logs/build-$1.log
  docker build -f docker/Dockerfile --target "$@" >"$log" 2>&1 || { tail -n 40 "$log" >&2; exit 1; }
  local torch_line
  torch_line=$(grep -E '^torch [0-9]' "$log" || true)  # printed only when the dependency layer ran
  echo "       ${torch_line:-dependency layers from the build cache}"
}

tag=smoke-$(date +%s)
HEAD_IMAGE=shiftsweep-head:$tag
GPU_IMAGE=shiftsweep-gpu-worker:$tag
build_args=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" --build-arg "TORCH_CUDA=$TORCH_CUDA" --label "shiftsweep.smoke=$tag")
[ -n "$BASE_IMAGE" ] && build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

work=$(mktemp -d /tmp/shiftsweep-smoke.XXXXXX)
chmod 755 "$work"
project=shiftsweep-smoke-$$
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { python3 -c "import secrets; print(secrets.token_hex($1))"; }
api_port=$(free_port)
dash_port=$(free_port)
export SHIFTSWEEP_HEAD_IMAGE=$HEAD_IMAGE SHIFTSWEEP_GPU_IMAGE=$GPU_IMAGE
export DATA_DIR=$work/data WEIGHTS_DIR=$work/weights RESULTS_DIR=$work/results
export API_PORT=$api_port DASHBOARD_PORT=$dash_port SHM_SIZE=1gb CPU_WORKER_CPUS=2
export RAY_AUTH_TOKEN SHIFTSWEEP_API_TOKEN POSTGRES_PASSWORD
RAY_AUTH_TOKEN=$(secret 32)
SHIFTSWEEP_API_TOKEN=$(secret 32)
POSTGRES_PASSWORD=$(secret 16)
[ -n "$POSTGRES_IMAGE" ] && export POSTGRES_IMAGE
compose=("${COMPOSE[@]}" -p "$project" -f docker/compose.yaml)
if [ "$WORKER" = cpu ]; then compose+=(--profile cpu); scale=(--scale gpu-worker=0); else scale=(); fi

teardown() {
  if [ "$KEEP" = 1 ]; then
    echo "kept: docker rm -f $project-gpu-image; ${compose[*]} down -v; rm -rf $work $logs"
    echo "      (API http://127.0.0.1:$api_port, token: $SHIFTSWEEP_API_TOKEN)"
    return
  fi
  step "tear down: containers, networks, volumes, work folder, images"
  docker rm -f "$project-gpu-image" >/dev/null 2>&1 || true
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work" "$logs"
  docker image rm "$HEAD_IMAGE" "$GPU_IMAGE" >/dev/null 2>&1 || true
  docker image prune -f --filter "label=shiftsweep.smoke=$tag" >/dev/null 2>&1 || true
  left=$(docker ps -a --filter "label=com.docker.compose.project=$project" -q | wc -l)
  took; echo "       containers left: $left"
}
trap teardown EXIT

step "build the head image (target head; base ${BASE_IMAGE:-as pinned}; torch index '${TORCH_INDEX_URL}', CUDA '${TORCH_CUDA}')"
build head -t "$HEAD_IMAGE" "${build_args[@]}" .
took; echo "       $HEAD_IMAGE: $(size "$HEAD_IMAGE")"
step "build the GPU worker image (target gpu-worker, same base and dependency layers)"
build gpu-worker -t "$GPU_IMAGE" "${build_args[@]}" .
took; echo "       $GPU_IMAGE: $(size "$GPU_IMAGE")"

step "load data and weights into the host folders as uid 1000 (what the Kubernetes loader pod does)"
mkdir -p "$DATA_DIR" "$WEIGHTS_DIR" "$RESULTS_DIR"
chown 1000:1000 "$DATA_DIR" "$WEIGHTS_DIR" "$RESULTS_DIR"
docker run --rm -u 1000:1000 -v "$DATA_DIR:/srv/shiftsweep/data" -v "$WEIGHTS_DIR:/srv/shiftsweep/weights" \
  "$HEAD_IMAGE" sh -c 'python -m worker.synthetic --data-root /srv/shiftsweep/data --only synth_spurious \
    && python -m worker.pretrain --shipped --models tiny_bit --out /srv/shiftsweep/weights' | sed 's/^/       /'
took

step "compose up: ray-head, postgres, api, ${WORKER}-worker (waits for every health check)"
"${compose[@]}" up -d --no-build --wait "${scale[@]}" 2>&1 | tail -n 3 | sed 's/^/       /'
took
"${compose[@]}" ps --format '{{.Service}}: {{.Status}}' 2>/dev/null | sed 's/^/       /' || "${compose[@]}" ps

if [ "$WORKER" = cpu ]; then
  # No GPU here, but the GPU image can still join as a CPU-only node: Ray accepts a node only if its Python and
  # Ray match the head's, which is what building both images from one base is for.
  step "the GPU worker image joins the cluster as one more node (CPU only here)"
  docker run -d --name "$project-gpu-image" --network "${project}_default" --init --shm-size 1g \
    -e RAY_AUTH_MODE=token -e "RAY_AUTH_TOKEN=$RAY_AUTH_TOKEN" \
    -v "$DATA_DIR:/srv/shiftsweep/data:ro" -v "$WEIGHTS_DIR:/srv/shiftsweep/weights:ro" \
    -v "$RESULTS_DIR:/srv/shiftsweep/results" \
    "$GPU_IMAGE" ray start --address=ray-head:6379 --block --disable-usage-stats --num-cpus=1 --num-gpus=0 >/dev/null
  alive=0
  for _ in $(seq 60); do
    alive=$("${compose[@]}" exec -T ray-head python -c 'import ray; ray.init(address="auto", logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))' 2>/dev/null | tail -n 1 | tr -d '\r')
    [ "$alive" = 3 ] && break
    sleep 2
  done
  [ "$alive" = 3 ] || { echo "the GPU image's node did not join: $alive nodes alive" >&2; docker logs "$project-gpu-image" >&2; exit 1; }
  echo "       nodes alive: $alive (head, cpu-worker, the GPU image's node)"
  echo "       head image: $(docker run --rm "$HEAD_IMAGE" python -c 'import sys, ray; print("Python", sys.version.split()[0], "Ray", ray.__version__)')"
  echo "       GPU image:  $(docker run --rm "$GPU_IMAGE" python -c 'import sys, ray; print("Python", sys.version.split()[0], "Ray", ray.__version__)')"
  took
fi

step "the volumes are ready: worker.assets_check in the API container (read-only mounts, uid 1000)"
"${compose[@]}" exec -T api python -m worker.assets_check --data-root /srv/shiftsweep/data \
  --weights-root /srv/shiftsweep/weights --datasets synth_spurious --models tiny_bit | sed 's/^/       /'

cli=("${compose[@]}" exec -T -e "SHIFTSWEEP_API_TOKEN=$SHIFTSWEEP_API_TOKEN" api shiftsweep)
step "submit a tiny sweep with the CLI (tiny_bit x synth_spurious x sgd, adamw x 1 LR x 1 seed x 2 epochs)"
sweep_id=$("${cli[@]}" submit --preset demo --quiet \
  --set 'models=[tiny_bit]' --set 'datasets=[synth_spurious]' --set 'methods=[sgd, adamw]' \
  --set 'lrs={sgd: [0.01], adamw: [0.001]}' --set 'seeds=[0]' --set epochs=2 --set probe=false \
  --set max_train_images=128 --set max_eval_images=64 | tr -d '\r')
echo "       sweep $sweep_id"
"${cli[@]}" watch "$sweep_id" 2>&1 | tail -n 4 | sed 's/^/       /'
took

step "check the results: sweep state, Parquet rows, report"
"${cli[@]}" status "$sweep_id" | head -n 5 | sed 's/^/       /'
"${compose[@]}" exec -T api python - "$sweep_id" <<'PY' | sed 's/^/       /'
import sys
import pyarrow.parquet as pq

root = f"/srv/shiftsweep/results/{sys.argv[1]}"
trials = pq.read_table(f"{root}/trials.parquet").to_pylist()
epochs = pq.read_table(f"{root}/epochs.parquet").to_pylist()
states = sorted({t["status"] for t in trials})
keys = [(e["trial_id"], e["epoch"]) for e in epochs]
print(f"trials.parquet: {len(trials)} rows, states {states}; epochs.parquet: {len(epochs)} rows")
assert len(trials) == 2 and states == ["completed"], trials
assert len(keys) == 4 and len(set(keys)) == 4, keys
PY
report=$(curl -fsS -H "Authorization: Bearer $SHIFTSWEEP_API_TOKEN" "http://127.0.0.1:$api_port/api/v1/sweeps/$sweep_id/report")
echo "$report" | grep -q "$sweep_id" || { echo "the report does not name the sweep" >&2; exit 1; }
echo "       report: $(printf %s "$report" | wc -c) bytes of HTML, names the sweep"
owners=$(find "$RESULTS_DIR/$sweep_id" -maxdepth 1 -printf '%U ' | tr ' ' '\n' | sort -u | tr '\n' ' ')
echo "       result files owned by uid: $owners"
took

step "smoke test passed"
