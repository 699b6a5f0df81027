"""NIC-NES training of a caption decoder (es-img-captioning's `nic_nes`).

OpenAI-ES-style natural evolution strategies (Salimans et al. 2017) over the whole
decoder: each generation evaluates `es.num_pairs` mirrored pairs theta +- sigma eps
on one batch of unique images with an on-device fitness (`es.fitness`, CIDEr-D of
greedy captions by default), ranks all 2n fitnesses, and hands the loss gradient
-g + l2coeff theta to an optax optimizer (`es.optimizer`, Adam at 5e-4 by default
for fine-tuning). The population
is never materialised (`nic_jax.evolution`). Starts from `ckpt.init_from` (an XE
workdir), a converted PyTorch checkpoint, or fresh params; resumes exactly.
"""

import functools

import optax

from nic_jax.errors import InputError
from nic_jax.evolution.lowrank import LowRankNES
from nic_jax.evolution.nes import NES
from nic_jax.train import evolution


def make_optimizer(es_config) -> optax.GradientTransformation:
    """Adam, or SGD with momentum, at a constant rate (annealing scales it)."""
    if es_config.optimizer == "adam":
        return optax.adam(
            es_config.learning_rate, b1=es_config.b1, b2=es_config.b2, eps=es_config.eps
        )
    if es_config.optimizer == "sgd":
        return optax.sgd(es_config.learning_rate, momentum=es_config.momentum)
    raise InputError(
        f"config es.optimizer={es_config.optimizer!r} is unknown; valid: adam, sgd"
    )


def build_strategy(config, template, axis=None) -> NES:
    """`NES` from `config.es` and `config.mesh`; `axis` (a mesh axis name)
    splits the members (see `evolution.EvolutionLoop`)."""
    es = config.es
    if es.get("noise_rank", 0) != 0:  # EGGROLL low-rank noise (evolution/lowrank.py)
        make = functools.partial(
            LowRankNES, rank=es.noise_rank, product=es.get("lowrank_product", "auto")
        )
    else:
        make = NES
    return make(
        template,
        es.num_pairs,
        make_optimizer(es),
        l2coeff=es.l2coeff,
        divide_by_sigma=es.divide_by_sigma,
        eval_chunk_size=es.eval_chunk_size,
        noise_chunk_size=es.noise_chunk_size,
        axis=axis,
        gradient_sum=config.mesh.nes_gradient,
    )


def _no_validation(run, strategy, val_reward):
    """NES validates on `evals.every_steps` only (see `evolution.make_validate`)."""
    del run, strategy, val_reward
    return lambda strategy_state, key: (strategy_state, {}, None)


def train_and_evaluate(config, workdir: str) -> dict:
    """Runs `es.num_steps` NES generations; returns the last validation scores."""
    return evolution.train(
        config,
        workdir,
        build_strategy,
        lambda strategy, state: strategy.params(state),
        _no_validation,
    )
