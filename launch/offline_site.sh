#!/usr/bin/env bash
# Prepares, on a machine with network, a folder of the pure-Python packages the
# benchmarks need beside an image that already has jax (with its GPU plugin),
# flax, optax, orbax-checkpoint, numpy, h5py and absl-py, for a GPU node that
# cannot reach a package index (a cluster's compute node, say):
#
#   launch/offline_site.sh [DIR]          # DIR defaults to .offline_site
#   # copy the checkout with DIR to the GPU node, then there:
#   PYTHONPATH=$PWD/.offline_site:$PWD PYTHON=python3 launch/gpu_bench.sh out.jsonl
#
# It holds ml-collections and pycocoevalcap's Python code (the baselines score
# with its `Cider`); pycocoevalcap's Java jars and METEOR's paraphrase table
# (~100 MB) are left out, so METEOR and SPICE do not run there (the `metrics`
# benchmark tokenizes with nic_jax's Python PTB rules when there is no Java: it
# ran on an H200 image without Java, 2026-12-04). Packages are unpacked from
# pure-Python wheels (any interpreter >= 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."
site=${1:-.offline_site}
python=${PYTHON:-python}
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT

"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" \
  "ml-collections>=0.1.1,<2" "pycocoevalcap>=1.2,<2"
mkdir -p "$site"
for wheel in "$wheels"/*.whl; do
  "$python" -m zipfile -e "$wheel" "$site"
done
find "$site/pycocoevalcap" \( -name '*.jar' -o -name '*.gz' \) -delete
rm -rf "$site"/*.dist-info
echo "$site: $(du -sh "$site" | cut -f1) ($(ls "$site" | tr '\n' ' '))" >&2
