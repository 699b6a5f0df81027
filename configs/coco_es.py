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
    """es-img-captioning's `caption_options` on the COCO files of data/."""
    data = config.data
    data.name = "cocotalk"
    data.input_json = "data/cocotalk.json"
    data.input_label_h5 = "data/cocotalk_label.h5"
    data.input_fc_dir = "data/cocobu_fc"
    data.dataset_json = "data/dataset_coco.json"
    data.seq_per_img = 5
    model = config.model
    model.name = "fc"
    model.fc_feat_size = 2048
    model.input_encoding_size = 128
    model.rnn_size = 128
    model.drop_prob_lm = 0.0
    config.evals.batch_size = 500
    config.evals.num_images = 5000


def get_config(arg: str | None = None):
    """Returns the config; `arg` presets: `seed=N`."""
    arg = parse_arg(arg, seed=0)
    config = sibling_config(__file__, "es.py", f"seed={arg.seed}")
    with config.unlocked():
        coco_data(config)
        es = config.es
        es.population_size = 1000
        es.num_parents = 50
        es.num_elites = 3
        es.num_elite_candidates = 2
        es.selection = "uniform"
        es.sigma = 0.002
        es.batch_size = 128
        es.num_val_items = 5000
        es.fitness = "greedy"
        es.schedule_start = 200
        es.schedule_limit = 200
        es.stdev_divisor = 1.414
        es.bs_multiplier = 2.0
        es.num_steps = 2000
        es.eval_chunk_size = 32
        config.ckpt.every_steps = 10
        config.evals.every_steps = 10
    config.lock()
    return config
