r"""NIC-ES on MS-COCO as es-img-captioning's documented NIC-ES experiment file.

The README's example `experiments/*.json` with `"algorithm": "nic_es"` of
es-img-captioning (rubencart), field by field:

  nb_offspring 1000 -> es.population_size; population_size 50 -> es.num_parents
  num_elites 3 -> es.num_elites; num_elite_cands 2 -> es.num_elite_candidates
  selection uniform -> es.selection; noise_stdev 0.002 -> es.sigma
  batch_size 128 -> es.batch_size; num_val_items 5000 -> es.num_val_items
  schedule_start 200, schedule_limit 200, stdev_divisor 1.414, bs_multiplier 2
  fitness greedy; FC captioner, input_encoding_size 128, rnn_size 128, fc 2048
  snapshot_freq 10 -> ckpt.every_steps; eval_prob 0.006 (a worker's chance to
  validate instead of mutating, ~6 of 1000 offspring a generation) -> elite
  candidates are validated every generation, the usual metrics every 10
  from_single (an XE model) -> ckpt.init_from; caption_options -> data.*

Data: self-critical.pytorch's COCO files (`nic_jax.prepro labels` writes them from
Karpathy's dataset_coco.json); `data/cocobu_fc` holds the bottom-up fc features.

  python -m nic_jax.main --config=configs/coco_es.py --workdir=/tmp/coco_es \
    --config.ckpt.init_from=/tmp/coco_xe_fc128
"""

from nic_jax.config_args import parse_arg, sibling_config


def coco_data(config) -> None:
    """es-img-captioning's `caption_options` on the COCO files of data/, its
    FC-128 captioner and snapshot cadence."""
    config.data.update(
        name="cocotalk",
        input_json="data/cocotalk.json",
        input_label_h5="data/cocotalk_label.h5",
        input_fc_dir="data/cocobu_fc",
        dataset_json="data/dataset_coco.json",
        seq_per_img=5,
    )
    config.model.update(
        name="fc",
        fc_feat_size=2048,
        input_encoding_size=128,
        rnn_size=128,
        drop_prob_lm=0.0,
    )
    config.evals.update(batch_size=500, num_images=5000, every_steps=10)
    config.ckpt.every_steps = 10


def tiny(config) -> None:
    """The `:tiny` preset: tests on small cocotalk-format files (data paths given)."""
    config.model.update(input_encoding_size=16, rnn_size=16)
    config.es.update(
        population_size=8,
        num_parents=4,
        num_pairs=4,
        batch_size=4,
        num_val_items=4,
        num_steps=2,
        eval_chunk_size=8,
    )
    config.evals.update(num_images=4, every_steps=2, final_split="")
    config.ckpt.every_steps = 2
    config.log.every_steps = 1


def get_config(arg: str | None = None):
    """Returns the config; `arg` presets: `tiny` (tests), `seed=N`."""
    arg = parse_arg(arg, tiny=False, seed=0)
    config = sibling_config(__file__, "es.py", f"seed={arg.seed}")
    with config.unlocked():
        coco_data(config)
        config.es.update(
            population_size=1000,
            num_parents=50,
            num_elites=3,
            num_elite_candidates=2,
            selection="uniform",
            sigma=0.002,
            batch_size=128,
            num_val_items=5000,
            fitness="greedy",
            schedule_start=200,
            schedule_limit=200,
            stdev_divisor=1.414,
            bs_multiplier=2.0,
            num_steps=2000,
            eval_chunk_size=32,
        )
        if arg.tiny:
            tiny(config)
    config.lock()
    return config
