#!/usr/bin/env bash
# Runs the same nic_jax command on every worker of a Cloud TPU VM (a pod slice
# has several hosts; each runs one process over its local TPU chips, and they
# join through jax.distributed, which detects the TPU cluster itself).
#
#   launch/tpu_vm.sh TPU_NAME ZONE [arguments of nic_jax.main]
#   launch/tpu_vm.sh my-v4-32 us-central2-b --config=configs/nes.py \
#     --workdir=gs://my-bucket/runs/nes
#
# The arguments after ZONE go unchanged (quoted for the remote shell) to
# `python -m nic_jax.main` on every worker, run in NIC_JAX_REMOTE_DIR (default
# ~/nic_jax: the checkout with `pip install -e .` done on each worker, e.g. by
# `gcloud compute tpus tpu-vm scp --worker=all`). The workdir must be shared by
# all workers (a GCS bucket or NFS): each saves its part of every checkpoint.
# NIC_JAX_PROJECT, if set, is passed as --project. PYTHON: remote interpreter.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 TPU_NAME ZONE [arguments of python -m nic_jax.main]" >&2
  exit 2
fi
tpu_name=$1
zone=$2
shift 2
remote_dir=${NIC_JAX_REMOTE_DIR:-nic_jax}
arguments=""
if [[ $# -gt 0 ]]; then
  arguments=$(printf ' %q' "$@")
fi
command="cd ${remote_dir} && NIC_JAX_DISTRIBUTED=1 ${PYTHON:-python3} -m nic_jax.main${arguments}"
project=()
if [[ -n "${NIC_JAX_PROJECT:-}" ]]; then
  project=(--project "$NIC_JAX_PROJECT")
fi
exec gcloud compute tpus tpu-vm ssh "$tpu_name" --zone "$zone" "${project[@]}" \
  --worker=all --command "$command"
