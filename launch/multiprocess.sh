#!/usr/bin/env bash
# Starts N processes of `python -m nic_jax.main` on this machine, joined through
# jax.distributed on 127.0.0.1 (CPU collectives over gloo): for testing the
# multi-host code paths on one machine, and for small clusters of processes.
#
#   launch/multiprocess.sh N [arguments of nic_jax.main]
#   launch/multiprocess.sh 2 --config=configs/nes.py:tiny --workdir=/tmp/nes2
#
# Every argument after N goes unchanged to each process. Each process sees its
# own devices: on CPU one device unless XLA_FLAGS says otherwise, e.g.
#   XLA_FLAGS=--xla_force_host_platform_device_count=2 launch/multiprocess.sh 2 ...
# runs 2 processes x 2 devices. On a machine with several GPUs, set
# JAX_LOCAL_DEVICE_IDS per process yourself, or run one process (it drives all
# of them). NIC_JAX_PORT picks the coordinator port (default: a free one);
# PYTHON the interpreter. If one process fails, the others are stopped and the
# script exits with its status.
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N [arguments of python -m nic_jax.main]" >&2
  exit 2
fi
num_processes=$1
shift
python=${PYTHON:-python}
port=${NIC_JAX_PORT:-$("$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

for ((i = 0; i < num_processes; i++)); do
  JAX_COORDINATOR_ADDRESS="127.0.0.1:${port}" \
    JAX_NUM_PROCESSES="$num_processes" \
    JAX_PROCESS_ID="$i" \
    "$python" -m nic_jax.main "$@" &
  pids+=("$!")
done

status=0
for ((left = num_processes; left > 0; left--)); do
  rc=0
  wait -n || rc=$?
  if [[ $rc -ne 0 && $status -eq 0 ]]; then
    status=$rc  # the first failure; the others would wait on it forever
    stop_all
  fi
done
exit "$status"
