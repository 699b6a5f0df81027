#!/usr/bin/env bash
# Every registered decoder trained by XE on the synthetic dataset for the same
# training seconds (config.budget.train_s; the clock stops during validation and
# saves), then evaluated on the test split: one JSON line of test metrics per
# decoder, tagged with its name, in WORKDIR/decoders.jsonl (and on stdout).
#
#   launch/decoders.sh WORKDIR [SECONDS] [more flags of python -m nic_jax.main]
#   launch/decoders.sh /tmp/nic_decoders 120
#   DECODERS="fc topdown" launch/decoders.sh /tmp/nic_decoders 20 \
#     --config=configs/default.py:tiny
#
# Re-running resumes: a decoder whose workdir holds its final checkpoint is only
# evaluated again. PYTHON picks the interpreter.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 WORKDIR [SECONDS] [flags of python -m nic_jax.main]" >&2
  exit 2
fi
workdir=$1
seconds=${2:-120}
shift $(($# >= 2 ? 2 : 1))
decoders=${DECODERS:-fc showtell att2in2 topdown in5400_rnn in5400_gru in5400_lstm in5400_att}
python=${PYTHON:-python}
mkdir -p "$workdir"
: >"$workdir/decoders.jsonl"
for name in $decoders; do
  "$python" -m nic_jax.main --config=configs/default.py \
    --workdir="$workdir/$name" \
    --config.model.name="$name" \
    --config.xe.num_epochs=1000 \
    --config.budget.train_s="$seconds" \
    --config.budget.eval_every_s="$(awk "BEGIN {print $seconds / 4}")" \
    --config.evals.every_steps=1000000000 --config.ckpt.every_steps=1000000000 \
    --config.finetune.trainer= \
    "$@" >"$workdir/$name.out"
  line=$(grep '^{' "$workdir/$name.out" | tail -1)
  echo "{\"decoder\": \"$name\", \"train_s\": $seconds, ${line#\{}" |
    tee -a "$workdir/decoders.jsonl"
done
