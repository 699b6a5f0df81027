r"""Sanity task: an MLP on scikit-learn's 8x8 digits, trained by NIC-NES or NIC-ES.

es-img-captioning checks its engine on MNIST (`experiments/mnist_nes.json`,
`mnist_ga.json`: fitness = -cross-entropy of a minibatch, validation = accuracy).
This is the same check without a download: the 1,797 bundled 8x8 digits (pixels / 16),
split 60/20/20 into train/val/test, a 64-H-10 tanh MLP, and one minibatch per
generation shared by all members. The GA's elite candidates are scored on the
validation split, and its best model ever is tested; NES tests its final theta.

  python -m nic_jax.experiments.digits --strategy=nes
  python -m nic_jax.experiments.digits --strategy=ga --generations=400

prints one JSON line: strategy, test_accuracy, generations, params, seconds.
"""

import dataclasses
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from nic_jax.errors import InputError
from nic_jax.evolution import ga as ga_lib
from nic_jax.evolution import nes as nes_lib
from nic_jax.evolution import noise as noise_lib


@dataclasses.dataclass(frozen=True)
class DigitsConfig:
    """Hyper-parameters of both runs (defaults reach >= 90% test accuracy)."""

    hidden: int = 32
    batch_size: int = 512
    nes_pairs: int = 50
    nes_sigma: float = 0.05
    nes_learning_rate: float = 0.05
    nes_l2coeff: float = 0.001
    nes_generations: int = 150
    ga_population: int = 200
    ga_parents: int = 20
    ga_elites: int = 2
    ga_candidates: int = 3
    ga_selection: str = "tournament"
    ga_tournament_size: int = 3
    ga_sigma: float = 0.02
    ga_generations: int = 250
    seed: int = 0


def load_splits(seed: int = 0) -> dict:
    """{'train' | 'val' | 'test': (x (n, 64) float32 in [0, 1], y (n,) int32)}."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    x = (digits.data[order] / 16.0).astype(np.float32)
    y = digits.target[order].astype(np.int32)
    cut_val, cut_test = int(0.6 * len(y)), int(0.8 * len(y))
    return {
        "train": (x[:cut_val], y[:cut_val]),
        "val": (x[cut_val:cut_test], y[cut_val:cut_test]),
        "test": (x[cut_test:], y[cut_test:]),
    }


def init_mlp(key, hidden: int) -> dict:
    """Glorot-normal weights and zero biases (es-img-captioning's initialisation)."""
    k1, k2 = jax.random.split(key)
    glorot = jax.nn.initializers.glorot_normal()
    return {
        "hidden": {"kernel": glorot(k1, (64, hidden)), "bias": jnp.zeros(hidden)},
        "out": {"kernel": glorot(k2, (hidden, 10)), "bias": jnp.zeros(10)},
    }


def logits(params: dict, x: jax.Array) -> jax.Array:
    """(B, 64) -> (B, 10)."""
    h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    return h @ params["out"]["kernel"] + params["out"]["bias"]


def neg_cross_entropy(params, key, x, y) -> jax.Array:
    """Fitness: -mean cross-entropy of the batch (key unused: deterministic)."""
    del key
    return -optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()


def accuracy(params, key, x, y) -> jax.Array:
    """Validation / test score: the fraction classified correctly."""
    del key
    return jnp.mean(jnp.argmax(logits(params, x), -1) == y)


def _minibatch(key, train, batch_size):
    x, y = train
    rows = jax.random.choice(key, x.shape[0], (batch_size,), replace=False)
    return x[rows], y[rows]


def train_nes(config: DigitsConfig, splits: dict, key):
    """NIC-NES with Adam; returns the final params."""
    params = init_mlp(jax.random.fold_in(key, 0), config.hidden)
    strategy = nes_lib.NES(
        params,
        config.nes_pairs,
        optax.adam(config.nes_learning_rate),
        l2coeff=config.nes_l2coeff,
    )
    train = tuple(jnp.asarray(a) for a in splits["train"])

    @jax.jit
    def generation(state, gen_key):
        ask_key, batch_key = jax.random.split(gen_key)
        x, y = _minibatch(batch_key, train, config.batch_size)
        fitness_fn = functools.partial(neg_cross_entropy, x=x, y=y)
        population, state = strategy.ask(ask_key, state)
        fitness = strategy.evaluate(fitness_fn, population, batch_key)
        return strategy.tell(population, fitness, state)

    state = strategy.init(params, config.nes_sigma)
    for g in range(config.nes_generations):
        state, _ = generation(state, jax.random.fold_in(key, g + 1))
    return strategy.params(state)


def train_ga(config: DigitsConfig, splits: dict, key):
    """NIC-ES with validation elitism; returns the best params ever."""
    params = init_mlp(jax.random.fold_in(key, 0), config.hidden)
    strategy = ga_lib.GA(
        params,
        config.ga_population,
        config.ga_parents,
        config.ga_elites,
        config.ga_candidates,
        config.ga_selection,
        config.ga_tournament_size,
    )
    train = tuple(jnp.asarray(a) for a in splits["train"])
    val_x, val_y = (jnp.asarray(a) for a in splits["val"])
    validation_fn = functools.partial(accuracy, x=val_x, y=val_y)
    source = noise_lib.generated()

    @jax.jit
    def generation(state, gen_key):
        ask_key, batch_key = jax.random.split(gen_key)
        x, y = _minibatch(batch_key, train, config.batch_size)
        fitness_fn = functools.partial(neg_cross_entropy, x=x, y=y)
        population, state = strategy.ask(ask_key, state)
        fitness = strategy.evaluate(fitness_fn, population, batch_key, source)
        state, metrics = strategy.tell(population, fitness, state, source)
        scores = strategy.evaluate_candidates(validation_fn, state, batch_key)
        state, val_metrics = strategy.record_validation(state, scores)
        return state, metrics | val_metrics

    state = strategy.init(params, config.ga_sigma)
    for g in range(config.ga_generations):
        state, _ = generation(state, jax.random.fold_in(key, g + 1))
    return strategy.params(state)


def run(strategy: str, config: DigitsConfig = DigitsConfig()) -> dict:
    """Trains by `strategy` ("nes" or "ga") and reports the test accuracy."""
    trainers = {"nes": train_nes, "ga": train_ga}
    if strategy not in trainers:
        raise InputError(
            f"--strategy={strategy!r} is unknown; valid: {sorted(trainers)}"
        )
    splits = load_splits(config.seed)
    start = time.perf_counter()
    params = trainers[strategy](config, splits, jax.random.key(config.seed))
    test_x, test_y = (jnp.asarray(a) for a in splits["test"])
    generations = config.nes_generations if strategy == "nes" else config.ga_generations
    return {
        "strategy": strategy,
        "test_accuracy": float(accuracy(params, None, test_x, test_y)),
        "generations": generations,
        "params": sum(p.size for p in jax.tree.leaves(params)),
        "seconds": round(time.perf_counter() - start, 2),
    }


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Command-line flags, defined only when run as a program (importing this module
    as a library must not claim global absl flag names such as `seed`)."""
    flags.DEFINE_enum("strategy", "nes", ["nes", "ga"], "NIC-NES or NIC-ES (GA).")
    flags.DEFINE_integer("generations", 0, "Generations (0: the strategy's default).")
    flags.DEFINE_integer("seed", 0, "Data split and training seed.")


def main(argv) -> None:
    del argv
    config = DigitsConfig(seed=FLAGS.seed)
    if FLAGS.generations > 0:
        key = "nes_generations" if FLAGS.strategy == "nes" else "ga_generations"
        config = dataclasses.replace(config, **{key: FLAGS.generations})
    print(json.dumps(run(FLAGS.strategy, config)))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
