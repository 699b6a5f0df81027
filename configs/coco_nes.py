r"""NIC-NES on MS-COCO as es-img-captioning's documented NIC-NES experiment file.

The README's example `experiments/*.json` with `"algorithm": "nic_nes"` of
es-img-captioning (rubencart), field by field:

  nb_offspring 1000 -> es.num_pairs 500 (mirrored pairs)
  noise_stdev 0.005 -> es.sigma (in the update as es-img-captioning: eps holds
  sigma; `es.divide_by_sigma` for the textbook scaling)
  batch_size 128, num_val_items 5000, l2coeff 0.0002 -> es.l2coeff
  schedule_start 200, schedule_limit 100, stdev_divisor 1.414, bs_multiplier
  1.414, stepsize_divisor 1; fitness greedy_logprob; safe_mutations SM-G-SUM with
  underflow 0.1; optimizer adam, stepsize 0.002 -> es.learning_rate
  FC captioner, input_encoding_size 128, rnn_size 128, fc 2048

One difference: `single_batch: false` (each pair its own batch) is not offered;
every pair is scored on the generation's one batch (`single_batch: true`), so
ranks compare members on the same images.

  python -m nic_jax.main --config=configs/coco_nes.py --workdir=/tmp/coco_nes \
    --config.ckpt.init_from=/tmp/coco_xe_fc128
"""

from nic_jax.config_args import parse_arg, sibling_config


def get_config(arg: str | None = None):
    """Returns the config; `arg` presets: `seed=N`."""
    arg = parse_arg(arg, seed=0)
    config = sibling_config(__file__, "coco_es.py", f"seed={arg.seed}")
    with config.unlocked():
        config.trainer = "nes"  # data, model and cadences: coco_es.py's
        es = config.es
        es.num_pairs = 500
        es.sigma = 0.005
        es.batch_size = 128
        es.num_val_items = 5000
        es.l2coeff = 0.0002
        es.schedule_start = 200
        es.schedule_limit = 100
        es.stdev_divisor = 1.414
        es.bs_multiplier = 1.414
        es.stepsize_divisor = 1.0
        es.fitness = "greedy_logprob"
        es.safe_mutation = "SM-G-SUM"
        es.sm_underflow = 0.1
        es.optimizer = "adam"
        es.learning_rate = 0.002
        es.num_steps = 2000
        es.eval_chunk_size = 32
        config.ckpt.every_steps = 10
        config.evals.every_steps = 10
    config.lock()
    return config
