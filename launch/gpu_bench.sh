#!/usr/bin/env bash
# Runs the benchmark suite (nic_jax/benchmarks) on a GPU and writes its JSON lines
# to a file: first one line describing the machine, then one line per benchmark
# (es_throughput, lowrank, memory, decode, xe_step, metrics), each also echoed.
#
#   launch/gpu_bench.sh [OUT.jsonl] [flags for every benchmark, e.g. --quick]
#   launch/gpu_bench.sh /tmp/bench_h100.jsonl
#
# OUT defaults to benchmarks_<gpu>_<date>.jsonl in the current directory.
# If jax sees no GPU, the script installs the CUDA 12 build of the jax version
# already installed (`pip install "jax[cuda12]==<version>"`: the jax-cuda12
# plugin and NVIDIA's CUDA/cuDNN wheels; needs network access and an NVIDIA
# driver >= 525), then checks again and stops if there is still no GPU.
# XLA_PYTHON_CLIENT_PREALLOCATE=false: without it the first process takes 75%
# of the GPU's memory, the per-population subprocesses of es_throughput/memory
# would not fit beside it, and device_peak_mb would read the pool, not the need.
# On a GPU es_throughput and memory vmap 128 members at a time (run them by hand
# with --chunk_size=N to try others). PYTHON picks the interpreter;
# NIC_JAX_BENCH_CPU=1 runs on whatever jax sees, installing nothing (a smoke test
# of this script: NIC_JAX_BENCH_CPU=1 launch/gpu_bench.sh /tmp/b.jsonl --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}

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

export XLA_PYTHON_CLIENT_PREALLOCATE=false
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
for bench in es_throughput lowrank memory decode xe_step metrics; do
  echo "== $bench" >&2
  "$python" -m "nic_jax.benchmarks.$bench" "$@" | tail -n 1 | tee -a "$out"
done
echo "== es_throughput, bf16 matmuls" >&2
"$python" -m nic_jax.benchmarks.es_throughput --matmul_precision=bfloat16 "$@" |
  tail -n 1 | tee -a "$out"
echo "wrote $out" >&2
