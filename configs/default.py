r"""XE training of the FC captioner on the embedded synthetic "shapes" dataset.

The default job of the README: generates the dataset on first use (no download),
trains by cross-entropy with the self-critical.pytorch recipe (Adam 5e-4, x0.8 every
3 epochs, gradients clipped to +-0.1), validates, and prints test metrics.

  python -m nic_jax.main --config=configs/default.py --workdir=/tmp/nic_xe
  python -m nic_jax.main --config=configs/default.py:tiny --workdir=/tmp/nic_tiny

Train on self-critical.pytorch cocotalk files instead of the synthetic data:

  python -m nic_jax.main --config=configs/default.py --workdir=/tmp/coco_fc \
    --config.data.name=cocotalk --config.data.input_json=data/cocotalk.json \
    --config.data.input_label_h5=data/cocotalk_label.h5 \
    --config.data.input_fc_dir=data/cocobu_fc \
    --config.data.dataset_json=data/dataset_coco.json
"""

from ml_collections import ConfigDict

from nic_jax.config_args import parse_arg


def get_config(arg: str | None = None) -> ConfigDict:
    """Returns the config; `arg` presets: `tiny` (tests and CI smoke runs)."""
    arg = parse_arg(arg, tiny=False, seed=0)
    config = ConfigDict()
    config.seed = arg.seed
    config.trainer = "xe"
    config.data = _data(arg.tiny)
    config.model = _model(arg.tiny)
    config.optim = _optim()
    config.xe = _xe(arg.tiny)
    config.evals = _evals(arg.tiny)
    config.ckpt = _ckpt(arg.tiny)
    config.log = ConfigDict(dict(every_steps=10 if arg.tiny else 50, tensorboard=False))
    config.mesh = ConfigDict(dict(data=-1))
    config.lock()
    return config


def _data(tiny: bool) -> ConfigDict:
    shapes = ConfigDict(
        dict(
            num_train=120 if tiny else 8000,
            num_val=24 if tiny else 1000,
            num_test=24 if tiny else 1000,
            image_size=128,
            num_regions=10,
            feat_dim=64 if tiny else 2048,
            seed=0,
            write_images=not tiny,
        )
    )
    return ConfigDict(
        dict(
            name="shapes",  # "shapes" (generated) or "cocotalk" (files below)
            cache_dir="",  # "" -> $NIC_JAX_CACHE or ~/.cache/nic_jax
            shapes=shapes,
            input_json="",
            input_label_h5="",
            input_fc_dir="",  # a <dir>_fc directory, or one .h5 per split
            input_att_dir="",
            dataset_json="",  # Karpathy json: evaluation references
            max_length=16,
            word_count_threshold=5,
            batch_size=10 if tiny else 50,
            seq_per_img=5,
        )
    )


def _model(tiny: bool) -> ConfigDict:
    return ConfigDict(
        dict(
            name="fc",
            fc_feat_size=64 if tiny else 2048,
            att_feat_size=64 if tiny else 2048,  # attention models (regions)
            att_hid_size=32 if tiny else 256,  # attention MLP (512 upstream)
            num_layers=1,  # ShowTell's stacked nn.LSTM
            nn_map_size=32 if tiny else 512,  # IN5400 input layer output size
            num_regions=10,  # IN5400 attention MLP outputs (K regions)
            input_encoding_size=32 if tiny else 256,
            rnn_size=32 if tiny else 256,
            drop_prob_lm=0.5,
        )
    )


def _optim() -> ConfigDict:
    return ConfigDict(
        dict(
            name="adam",
            learning_rate=5e-4,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            lr_decay_start_epoch=0,  # -1 disables the decay
            lr_decay_every_epochs=3,
            lr_decay_rate=0.8,
            grad_clip_value=0.1,  # element-wise, as self-critical.pytorch
        )
    )


def _xe(tiny: bool) -> ConfigDict:
    return ConfigDict(
        dict(
            num_epochs=2 if tiny else 15,
            ss_start_epoch=-1,  # scheduled sampling off; 0 turns it on
            ss_increase_every_epochs=5,
            ss_increase_prob=0.05,
            ss_max_prob=0.25,
        )
    )


def _evals(tiny: bool) -> ConfigDict:
    return ConfigDict(
        dict(
            every_steps=12 if tiny else 500,
            split="val",
            batch_size=24 if tiny else 500,
            num_images=-1,  # -1: the whole split
            metrics=("Bleu", "ROUGE_L", "CIDEr"),
            backend="jax",  # "jax": on-device BLEU/ROUGE-L/CIDEr; "coco": pycocoevalcap
            test_metrics=("Bleu", "ROUGE_L", "CIDEr", "METEOR"),
            best_metric="CIDEr",
            final_split="test",  # evaluated with the best checkpoint after training
            num_samples=5,  # sample captions logged at each evaluation
        )
    )


def _ckpt(tiny: bool) -> ConfigDict:
    return ConfigDict(
        dict(
            every_steps=6 if tiny else 250,
            max_to_keep=2,
            async_save=True,
            init_from="",
        )
    )
