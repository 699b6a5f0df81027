#!/usr/bin/env bash
# Runs the benchmark suite (nic_jax/benchmarks) on a GPU, most important first,
# and writes its JSON lines to a file: one line describing the machine, then one
# line per benchmark run, each also echoed:
#
#   1. es_throughput --low_rank=4   issue 8's target: a generation of 1,024
#                                   offspring x 128 images of FC-128 (its
#                                   `generation_s`; full and low rank)
#   2. lowrank --rank=4 --population=1024 --products=grouped,stacked,shared
#                                   low-rank against full-rank noise at that
#                                   size, each form of the low-rank products
#                                   (evolution/lowrank_products.py)
#   3. profile_generation --rank=4 --product=grouped
#                                   where that generation's time goes, by kernel
#   4. es_throughput --matmul_precision=bfloat16 --low_rank=4
#                                   bf16 matmuls, full and low rank
#   5. decode, 6. xe_step, 7. memory, 8. metrics
#
#   launch/gpu_bench.sh [OUT.jsonl] [flags for every benchmark, e.g. --quick]
#   NIC_JAX_BENCH_BUDGET_S=480 launch/gpu_bench.sh /tmp/bench_h100.jsonl
#
# OUT defaults to benchmarks_<gpu>_<date>.jsonl in the current directory.
# NIC_JAX_BENCH_BUDGET_S (default 0: none) bounds the whole run's wall time: a
# benchmark starts only with 60 s or more left and is stopped at the deadline.
# A benchmark that fails or is stopped does not end the run: its line reads
# {"benchmark": NAME, "flags": ..., "error": ...} and the next one starts.
# NIC_JAX_BENCH_ONLY="decode xe_step" runs those of the list alone.
# PYTHON picks the interpreter (default python). The package is imported from
# the interpreter's path: `pip install -e .`, or PYTHONPATH=<this checkout> on a
# machine whose image already has jax, flax, optax and orbax (see
# launch/offline_site.sh for the pure-Python rest on a machine without network).
# If jax sees no GPU, the script installs the CUDA 12 build of the jax version
# already installed (`pip install "jax[cuda12]==<version>"`: the jax-cuda12
# plugin and NVIDIA's CUDA/cuDNN wheels; needs network access and an NVIDIA
# driver >= 525), then checks again and stops if there is still no GPU.
# XLA_PYTHON_CLIENT_PREALLOCATE=false: without it the first process takes 75%
# of the GPU's memory, the per-population subprocesses of es_throughput/memory
# would not fit beside it, and device_peak_mb would read the pool, not the need.
# On a GPU es_throughput and memory vmap 128 members at a time (run them by hand
# with --chunk_size=N to try others). NIC_JAX_BENCH_CPU=1 runs on whatever jax
# sees, installing nothing (a smoke test of this script:
# NIC_JAX_BENCH_CPU=1 launch/gpu_bench.sh /tmp/b.jsonl --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
budget=${NIC_JAX_BENCH_BUDGET_S:-0}
only=${NIC_JAX_BENCH_ONLY:-}
start=$SECONDS

has_gpu() {
  "$python" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' \
    2>/dev/null
}

if [[ -z "${NIC_JAX_BENCH_CPU:-}" ]] && ! has_gpu; then
  version=$("$python" -c 'import jax; print(jax.__version__)')
  echo "jax $version sees no GPU: installing jax[cuda12]==$version" >&2
  "$python" -m pip install --quiet "jax[cuda12]==$version"
  if ! has_gpu; then
    echo "error: still no GPU visible to jax (nvidia-smi: $(nvidia-smi -L 2>&1 \
      | head -1)); see https://docs.jax.dev/en/latest/installation.html" >&2
    exit 1
  fi
fi

export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
[[ -z "${NIC_JAX_BENCH_CPU:-}" ]] && unset JAX_PLATFORMS
gpu=$("$python" -c 'import jax; print(jax.devices()[0].device_kind)' | tr ' ' '_')
out=${1:-benchmarks_${gpu}_$(date +%Y%m%d).jsonl}
[[ $# -gt 0 ]] && shift

"$python" - >>"$out" <<'EOF'
import datetime, json, os, platform
import jax
print(json.dumps({
    "benchmark": "environment",
    "date": datetime.date.today().isoformat(),
    "devices": [d.device_kind for d in jax.devices()],
    "jax": jax.__version__,
    "python": platform.python_version(),
    "cpu_cores": os.cpu_count(),
}))
EOF

# One benchmark: its JSON line, or an error line naming it, its flags and why.
run_one() {
  local name=$1 flags=$2 limit=$3 rc=0 line
  shift 3
  echo "== $name $flags (limit ${limit}s)" >&2
  # shellcheck disable=SC2086  # flags are words
  line=$(timeout --kill-after=10 "$limit" \
    "$python" -m "nic_jax.benchmarks.$name" $flags "$@" | tail -n 1) || rc=$?
  if [[ $rc -ne 0 || $line != "{"* ]]; then
    local why="exit status $rc"
    [[ $rc -eq 124 || $rc -eq 137 ]] && why="stopped after ${limit}s"
    line="{\"benchmark\": \"$name\", \"flags\": \"$flags\", \"error\": \"$why\"}"
  fi
  echo "$line" | tee -a "$out"
}

plan=(
  "es_throughput|--low_rank=4"
  "lowrank|--rank=4 --population=1024 --processes=1 --repeats=3 --products=grouped,stacked,shared"
  "profile_generation|--rank=4 --product=grouped"
  "es_throughput|--matmul_precision=bfloat16 --low_rank=4"
  "decode|"
  "xe_step|"
  "memory|"
  "metrics|"
)
for entry in "${plan[@]}"; do
  name=${entry%%|*}
  flags=${entry#*|}
  [[ -n $only && " $only " != *" $name "* ]] && continue
  limit=86400
  if [[ $budget -gt 0 ]]; then
    limit=$((budget - (SECONDS - start)))
    if [[ $limit -lt 60 ]]; then
      echo "== $name $flags: skipped, ${limit}s of the budget left" >&2
      continue
    fi
  fi
  run_one "$name" "$flags" "$limit" "$@"
done
echo "wrote $out" >&2
