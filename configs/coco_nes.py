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
  single_batch false -> es.single_batch (each mirrored pair draws its own batch
  of 128 train images on the device; the train split's fc features, 0.9 GB for
  COCO's 113k images, sit there)
  FC captioner, input_encoding_size 128, rnn_size 128, fc 2048

  python -m nic_jax.main --config=configs/coco_nes.py --workdir=/tmp/coco_nes \
    --config.ckpt.init_from=/tmp/coco_xe_fc128
"""

from nic_jax.config_args import parse_arg, sibling_config


def get_config(arg: str | None = None):
    """Returns the config; `arg` presets: `tiny` (tests), `seed=N`."""
    arg = parse_arg(arg, tiny=False, seed=0)
    preset = ",".join(["tiny"] * arg.tiny + [f"seed={arg.seed}"])
    config = sibling_config(__file__, "coco_es.py", preset)
    with config.unlocked():
        config.trainer = "nes"  # data, model and cadences: coco_es.py's
        config.es.update(  # batch size, validation images, cadences: coco_es's
            num_pairs=500,
            sigma=0.005,
            l2coeff=0.0002,
            schedule_start=200,
            schedule_limit=100,
            stdev_divisor=1.414,
            bs_multiplier=1.414,
            stepsize_divisor=1.0,
            fitness="greedy_logprob",
            safe_mutation="SM-G-SUM",
            sm_underflow=0.1,
            optimizer="adam",
            learning_rate=0.002,
            single_batch=False,
        )
    config.lock()
    return config
