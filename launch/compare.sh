#!/usr/bin/env bash
# The method comparison of BENCHMARKS.md: XE, then SCST, NIC-NES and NIC-ES from the
# same XE checkpoint on equal training seconds, each evaluated on the test split
# (greedy and beam 3); writes compare.md, compare.png and compare.json into WORKDIR.
#
#   launch/compare.sh WORKDIR [flags of python -m nic_jax.experiments.compare]
#   launch/compare.sh /tmp/nic_compare --xe_workdir=/tmp/nic_xe --budget_s=150
#   launch/compare.sh /tmp/nic_compare_tiny --tiny --budget_s=4
#
# Without --xe_workdir, XE (configs/default.py) is trained into WORKDIR/xe first.
# Re-running the same command resumes; finished stages return at once.
# PYTHON picks the interpreter.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 WORKDIR [flags of python -m nic_jax.experiments.compare]" >&2
  exit 2
fi
workdir=$1
shift
exec "${PYTHON:-python}" -m nic_jax.experiments.compare --workdir="$workdir" "$@"
