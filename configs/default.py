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
    config.es = _es(arg.tiny)
    config.finetune = _finetune(arg.tiny)
    config.evals = _evals(arg.tiny)
    config.ckpt = _ckpt(arg.tiny)
    # plots: PNG curves redrawn into <workdir>/plots at each checkpoint
    config.log = ConfigDict(
        dict(every_steps=10 if arg.tiny else 50, tensorboard=False, plots=not arg.tiny)
    )
    # wall-clock budget (nic_jax/train/budget.py): stop after train_s seconds of
    # training, validate every eval_every_s of them; 0: no budget, no timing
    config.budget = ConfigDict(dict(train_s=0.0, eval_every_s=0.0))
    config.mesh = _mesh()
    # f32 matmul precision of every jitted program (jax_default_matmul_precision):
    # "default"; "bfloat16" (bf16 inputs, f32 sums: GPU/TPU tensor cores; params
    # and activations stay float32; on a CPU, where XLA ignores the setting, the
    # logit and FC gate products, models.layers.folded_linear: 1.5x the NES
    # generations/s with AVX512-BF16); "tensorfloat32"; "float32" (exact passes)
    # compilation_cache_dir: a folder (or gs:// URL) where JAX keeps compiled
    # programs, so that a resumed or repeated run loads them instead of compiling
    # again ("": off, or JAX_COMPILATION_CACHE_DIR's); those that compiled in under
    # compilation_cache_min_compile_s are not kept (train/common.py)
    config.compute = ConfigDict(
        dict(
            matmul_precision="default",
            compilation_cache_dir="",
            compilation_cache_min_compile_s=0.1,
        )
    )
    # a NaN/Inf loss, reward, fitness or parameter stops the run; max_rollbacks > 0
    # restarts it from its last checkpoint (at most that often) with the step
    # sizes (learning rates, sigma) x rollback_factor (nic_jax/train/rollback.py)
    config.numerics = ConfigDict(dict(max_rollbacks=0, rollback_factor=0.5))
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
            hidden_sizes=(),  # per-layer widths of a grown decoder; (): rnn_size
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
            # METEOR runs Java (~5 s to start): left out of :tiny (tests, smoke)
            test_metrics=("Bleu", "ROUGE_L", "CIDEr", *(() if tiny else ("METEOR",))),
            best_metric="CIDEr",
            final_split="test",  # evaluated with the best checkpoint after training
            num_samples=5,  # sample captions logged at each evaluation
            beam_size=1,  # 1: greedy; > 1: beam search (UNK suppressed)
            max_len=0,  # words decoded; 0: data.max_length (self-critical: 20)
            remove_bad_endings=False,  # no EOS right after "a", "the", "with", ...
            block_trigrams=False,  # self-critical's soft trigram blocking
            length_penalty="",  # beam ranking: "", "avg_1" or "wu_0.7" (Wu et al.)
        )
    )


def _ckpt(tiny: bool) -> ConfigDict:
    return ConfigDict(
        dict(
            every_steps=6 if tiny else 250,
            max_to_keep=2,
            async_save=True,
            init_from="",
            # resume even if the training data's fingerprint changed (new features,
            # captions or images: the data position then means other batches)
            allow_data_change=False,
        )
    )


def _finetune(tiny: bool) -> ConfigDict:
    """A second stage in the same command: `trainer` ("nes" or "es"; "" for
    none) continues from this run's best checkpoint in `<workdir>/<trainer>`."""
    return ConfigDict(
        dict(
            trainer="nes",
            eval_every_steps=5 if tiny else 20,  # its evals.every_steps
        )
    )


def _es(tiny: bool) -> ConfigDict:
    """The `es` group of the NES and GA trainers (and of the fine-tuning stage)."""
    return ConfigDict(
        dict(
            num_steps=20 if tiny else 60,  # generations
            batch_size=8 if tiny else 50,  # unique images per generation
            # True: every member scores the generation's batch; False: each
            # antithetic pair (GA: each child) draws its own batch of batch_size
            # from the train split, whose features then sit on the device
            single_batch=True,
            fitness="greedy",  # see nic_jax/evolution/fitness.py
            sigma=0.002,  # mutation stdev
            # NES
            num_pairs=8 if tiny else 50,  # population 2n
            optimizer="adam",  # or "sgd" (with momentum)
            learning_rate=5e-4,  # es-img-captioning: 1e-3 to 2e-3 from scratch
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            momentum=0.9,
            # es-img-captioning's 0.005 pulls a pretrained decoder to 0: with Adam,
            # the L2 term outweighs the noisy fitness gradient (|g| ~ sigma / sqrt(n))
            l2coeff=0.0,
            divide_by_sigma=False,  # True: textbook 1/sigma (es-img-captioning: sigma)
            # GA
            population_size=16 if tiny else 100,  # lambda children
            num_parents=6 if tiny else 20,  # mu
            num_elites=1,  # podium size E
            num_elite_candidates=2 if tiny else 3,  # C, scored on validation
            selection="tournament",  # or "uniform"
            tournament_size=3,
            num_val_items=24 if tiny else 200,  # validation images for the podium
            # noise and memory
            noise="table",  # "table" (shared noise table) or "generated" (from keys)
            noise_table_size=2**22 if tiny else 2**24,
            noise_chunk_size=0,
            # r > 0: rank-r matrix noise A B^T / sqrt(r) for NES (EGGROLL); 0: full
            noise_rank=0,
            # the low-rank population's Linear products (evolution/lowrank_products.py):
            # "auto" (by backend), "shared", "stacked" or "grouped"
            lowrank_product="auto",
            # members vmapped together; at a COCO-size vocabulary 2 is fastest on
            # a CPU (a member's logits stay near the cache; BENCHMARKS.md, NIC-NES
            # throughput, run 4); accelerators want more rows (the GPU benchmarks
            # use 128; other sizes not measured)
            eval_chunk_size=16 if tiny else 25,
            # GA architecture mutation (nic_jax/train/architecture.py): with this
            # probability a kept offspring is widened by arch_step units of layer
            # arch_layer (function-preserving, r2r or net2net), up to arch_buckets
            # widths; 0: off
            arch_mutation=0.0,
            arch_layer=0,
            arch_step=4 if tiny else 32,
            arch_buckets=3,
            arch_method="r2r",
            # safe mutations: "", SM-PROPORTIONAL, SM-G-SUM, SM-G-ABS, SM-VECTOR
            safe_mutation="",
            sm_underflow=0.01,
            sensitivity_file="",
            # annealing (0 disables a trigger)
            schedule_start=0,
            schedule_limit=0,
            patience=0,
            stdev_divisor=2.0,
            bs_multiplier=2.0,
            stepsize_divisor=2.0,
            # reward
            cider_reward_weight=1.0,
            bleu_reward_weight=0.0,
            include_eos=True,
            cached_tokens="",  # df file; "" counts the train references
        )
    )


def _mesh() -> ConfigDict:
    """Devices and processes (`nic_jax.parallel`); launch/ starts several processes."""
    return ConfigDict(
        dict(
            data=-1,  # devices splitting the XE/SCST batch; -1: all (that divide it)
            population=-1,  # devices splitting the NES/ES population; -1: all
            nes_gradient="psum",  # or "replicated": see nic_jax/parallel/__init__.py
            # jax.distributed.initialize(); launch/ scripts ask through the env
            distributed=False,
        )
    )
