"""NIC-NES: OpenAI-ES-style natural evolution strategies (es-img-captioning).

Salimans et al. 2017, "Evolution Strategies as a Scalable Alternative to
Reinforcement Learning"; es-img-captioning's `nic_nes` (master `gradient_estimate`).
Each generation samples n mirrored pairs theta +- sigma * scale * z_i, ranks all 2n
fitnesses together (`ranks.centered_ranks`), and estimates the ascent direction

    g = c * sum_i (rank+_i - rank-_i) * scale * z_i / (2n),

rebuilt from the pair keys in chunks (no (P, N) array). With a mesh, each device
scores its slice of the members and sums its slice of the pairs
(`nic_jax.parallel`); only fitness scalars and the (N,) partial sums travel.
es-img-captioning's noise vectors already include sigma (eps_i = sigma * scale *
z_i), so its c = sigma; with `divide_by_sigma=True`, c = 1 / sigma, the textbook
score-function estimate (1 / sigma) E[F(theta + sigma z) z] (up to the rank
shaping), i.e. the default divided by sigma^2. Adam is nearly invariant to that
constant; SGD is not.

The optimizer (any optax GradientTransformation) receives the loss gradient
-g + l2coeff * theta (L2 regularisation, as upstream), and its update is multiplied
by `lr_scale` (annealing divides it by `stepsize_divisor`). `update_ratio` is
||delta theta|| / ||theta||, as OpenAI ES's optimizer reports.

Usage, one generation (all pure; jit the whole thing once):
    population, state = nes.ask(key, state)
    fitness = nes.evaluate(fitness_fn, population, fitness_key, source)
    state, metrics = nes.tell(population, fitness, state, source)
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from nic_jax.errors import InputError
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution import population as population_lib
from nic_jax.evolution.ranks import centered_ranks
from nic_jax.parallel.members import sum_over_members

GRADIENT_SUMS = ("psum", "replicated")


@struct.dataclass
class NESState:
    """theta (N,) flat params, the optimizer state, sigma, lr_scale, generation."""

    theta: jax.Array
    opt_state: optax.OptState
    sigma: jax.Array
    lr_scale: jax.Array
    generation: jax.Array


def fitness_metrics(fitness: jax.Array) -> dict:
    """Summary statistics of a generation's fitness (P,)."""
    return {
        "fitness_mean": jnp.mean(fitness),
        "fitness_std": jnp.std(fitness),
        "fitness_max": jnp.max(fitness),
        "fitness_min": jnp.min(fitness),
    }


class NES:
    """NIC-NES over a params pytree shaped like `template`.

    Args:
      template: params pytree (shapes and dtypes only are used).
      num_pairs: n; the population has P = 2n members.
      optimizer: optax transformation applied to the loss gradient.
      l2coeff: L2 coefficient added to the loss gradient.
      divide_by_sigma: textbook 1/sigma scaling instead of es-img-captioning's sigma.
      eval_chunk_size: members vmapped together when evaluating.
      noise_chunk_size: members whose noise is regenerated together in `tell`;
        0 (the trainer's default) or 1: one at a time, which XLA fuses into the
        running sum without a buffer (ask + tell of P = 1,024 members of FC-128
        from the shared table on a 2-core CPU: 0.24 s, against 0.63 s and 367 MB
        of temporaries in chunks of 32; BENCHMARKS.md, NIC-NES throughput).
      axis: the mesh axis that splits the members when a generation runs as one
        per-device program (`parallel.members.spmd`); None: all on one device.
      gradient_sum: with an axis, "psum" (each device sums its pairs' noise, one
        all-reduce of N floats) or "replicated" (every device sums all pairs from
        the gathered ranks; no communication but D times the noise work).
    """

    def __init__(
        self,
        template,
        num_pairs: int,
        optimizer: optax.GradientTransformation,
        l2coeff: float = 0.0,
        divide_by_sigma: bool = False,
        eval_chunk_size: int = 32,
        noise_chunk_size: int = 32,
        axis: str | None = None,
        gradient_sum: str = "psum",
    ):
        if num_pairs < 1:
            raise InputError(f"NES num_pairs={num_pairs} must be at least 1")
        if gradient_sum not in GRADIENT_SUMS:
            raise InputError(
                f"NES gradient_sum={gradient_sum!r} is unknown; valid: {GRADIENT_SUMS}"
            )
        self.axis = axis
        self.gradient_sum = gradient_sum
        flat, self.unravel = ravel_pytree(template)
        self.num_params = flat.shape[0]
        self.num_pairs = num_pairs
        self.optimizer = optimizer
        self.l2coeff = l2coeff
        self.divide_by_sigma = divide_by_sigma
        self.eval_chunk_size = eval_chunk_size
        self.noise_chunk_size = noise_chunk_size

    def init(self, params, sigma: float) -> NESState:
        """State centred on `params` with mutation stdev `sigma`."""
        theta, _ = ravel_pytree(params)
        theta = theta.astype(jnp.float32)
        return NESState(
            theta=theta,
            opt_state=self.optimizer.init(theta),
            sigma=jnp.asarray(sigma, jnp.float32),
            lr_scale=jnp.asarray(1.0, jnp.float32),
            generation=jnp.asarray(0, jnp.int32),
        )

    def ask(self, key, state: NESState, scale=None):
        """The generation's 2n antithetic members; `scale` (N,) is a safe-mutation
        factor. Returns (population, state) as evosax does."""
        population = population_lib.antithetic(
            state.theta, state.sigma, key, self.num_pairs, scale
        )
        return population, state

    def evaluate(self, fitness_fn: Callable, population, fitness_key, source=None):
        """Fitness (P,) of the members; see `population.evaluate`."""
        source = noise_lib.generated() if source is None else source
        return population_lib.evaluate(
            fitness_fn,
            self.unravel,
            population,
            source,
            fitness_key,
            self.eval_chunk_size,
            self.axis,
        )

    def gradient(self, population, fitness: jax.Array, source=None) -> jax.Array:
        """Ascent estimate g (N,) from the centered ranks of fitness (P,)."""
        source = noise_lib.generated() if source is None else source
        shaped = centered_ranks(fitness)
        weights = shaped[0::2] - shaped[1::2]
        total = self._noise_sum(
            source, population.noise_key, population.noise_index[0::2], weights
        )
        sigma = population.sigma
        factor = 1.0 / sigma if self.divide_by_sigma else sigma
        g = factor * total / fitness.shape[0]
        if population.scale is not None:
            g = g * population.scale[0]
        return g

    def _noise_sum(self, source, key, indices, weights) -> jax.Array:
        """sum_i weights[i] * eps(key, indices[i]) (N,); split over the devices
        of `axis` when `gradient_sum="psum"`."""
        weighted_sum = lambda idx, w: noise_lib.weighted_noise_sum(
            source, key, idx, w, self.num_params, self.noise_chunk_size
        )
        axis = None if self.gradient_sum == "replicated" else self.axis
        return sum_over_members(weighted_sum, (indices, weights), axis)

    def tell(self, population, fitness: jax.Array, state: NESState, source=None):
        """One optimizer step on -g + l2coeff * theta. Returns (state, metrics)."""
        g = self.gradient(population, fitness, source)
        loss_grad = -g + self.l2coeff * state.theta
        updates, opt_state = self.optimizer.update(
            loss_grad, state.opt_state, state.theta
        )
        updates = updates * state.lr_scale
        theta_norm = jnp.linalg.norm(state.theta)
        metrics = fitness_metrics(fitness) | {
            "update_ratio": jnp.linalg.norm(updates) / theta_norm,
            "grad_norm": jnp.linalg.norm(g),
            "theta_norm": theta_norm,
            "sigma": state.sigma,
        }
        state = state.replace(
            theta=state.theta + updates,
            opt_state=opt_state,
            generation=state.generation + 1,
        )
        return state, metrics

    def params(self, state: NESState):
        """The current theta as a params pytree."""
        return self.unravel(state.theta)
