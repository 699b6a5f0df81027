"""NIC-ES: a (mu, lambda) genetic algorithm with validation elitism (es-img-captioning).

Such et al. 2017, "Deep Neuroevolution: Genetic Algorithms Are a Competitive
Alternative for Training Deep Neural Networks"; es-img-captioning's `nic_es`
(master `selection`, `Podium.record_elites`, worker parent choice).

The parents of a generation are the podium (the E best models ever by validation
score, best first) followed by the top mu - E offspring of the last generation by
minibatch fitness (best first). Each of the lambda children picks a parent uniformly,
or by a tournament of k distinct parents whose winner is the lowest index (the
parents are sorted), and is parent + sigma * scale * eps with eps regenerated from
the child's key. The top C offspring are the elite candidates: validation scores them
and `record_validation` merges them into the podium (a stable sort of podium scores
then candidate scores, so ties keep the older entry); a generation that adds no entry
is "bad" for annealing's patience. The best model ever is podium row 0.

State holds exactly mu parameter rows (N,): rows [0, E) the podium, rows [E, mu) the
kept offspring, rows [E, E + C) the elite candidates. Children exist only as keys.
Podium rows with score -inf (not yet filled) are never chosen as parents.

Usage, one generation:
    population, state = ga.ask(key, state)
    fitness = ga.evaluate(fitness_fn, population, fitness_key, source)
    state, metrics = ga.tell(population, fitness, state, source)
    scores = ga.evaluate_candidates(validation_fn, state, key)  # every so often
    state, val_metrics = ga.record_validation(state, scores)
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax
from jax.flatten_util import ravel_pytree

from nic_jax.errors import InputError
from nic_jax.evolution import noise as noise_lib
from nic_jax.evolution import population as population_lib
from nic_jax.evolution.nes import fitness_metrics

SELECTIONS = ("uniform", "tournament")


@struct.dataclass
class GAState:
    """mu parent rows (podium first), their scores, sigma and the generation."""

    parents: jax.Array  # (mu, N)
    podium_scores: jax.Array  # (E,) validation scores, best first; -inf = empty
    offspring_fitness: jax.Array  # (mu - E,) minibatch fitness of rows [E, mu)
    sigma: jax.Array  # ()
    generation: jax.Array  # () int32


def _ordered(values: jax.Array) -> jax.Array:
    """Indices best first (descending, stable; NaN last)."""
    return jnp.argsort(-jnp.where(jnp.isnan(values), -jnp.inf, values), stable=True)


class GA:
    """NIC-ES over a params pytree shaped like `template`.

    Args:
      template: params pytree (shapes and dtypes only are used).
      population_size: lambda, children per generation.
      num_parents: mu (es-img-captioning's `population_size` of parents).
      num_elites: E, the podium size (>= 1).
      num_elite_candidates: C, offspring scored on validation (1 <= C <= mu - E).
      selection: "uniform" or "tournament" (of `tournament_size` parents).
      eval_chunk_size: children vmapped together when evaluating.
      axis: the mesh axis that splits the children and the elite candidates
        when a generation runs as one per-device program
        (`parallel.members.spmd`); None: all on one device. Parent rows stay
        replicated: every device rebuilds the kept children from their keys, so
        no row is communicated.
    """

    def __init__(
        self,
        template,
        population_size: int,
        num_parents: int,
        num_elites: int = 1,
        num_elite_candidates: int = 1,
        selection: str = "uniform",
        tournament_size: int = 2,
        eval_chunk_size: int = 32,
        axis: str | None = None,
    ):
        _check(
            population_size, num_parents, num_elites, num_elite_candidates, selection
        )
        flat, self.unravel = ravel_pytree(template)
        self.num_params = flat.shape[0]
        self.population_size = population_size
        self.num_parents = num_parents
        self.num_elites = num_elites
        self.num_candidates = num_elite_candidates
        self.selection = selection
        self.tournament_size = min(max(1, tournament_size), num_parents)
        self.eval_chunk_size = eval_chunk_size
        self.axis = axis

    def init(self, params, sigma: float) -> GAState:
        """Every parent row starts at `params`; the podium is empty."""
        theta, _ = ravel_pytree(params)
        mu, elites = self.num_parents, self.num_elites
        return GAState(
            parents=jnp.tile(theta.astype(jnp.float32)[None], (mu, 1)),
            podium_scores=jnp.full((elites,), -jnp.inf, jnp.float32),
            offspring_fitness=jnp.full((mu - elites,), -jnp.inf, jnp.float32),
            sigma=jnp.asarray(sigma, jnp.float32),
            generation=jnp.asarray(0, jnp.int32),
        )

    def _pick_parent(self, key, valid: jax.Array) -> jax.Array:
        mu = self.num_parents
        if self.selection == "uniform":
            return jax.random.choice(key, mu, p=valid / valid.sum())
        drawn = jax.random.choice(
            key, mu, (self.tournament_size,), replace=False, p=valid / valid.sum()
        )
        # Parents are sorted best first: the tournament winner is the lowest index.
        return jnp.min(jnp.where(valid[drawn] > 0, drawn, mu))

    def ask(self, key, state: GAState, scale=None):
        """lambda children: parent choice and noise keys. `scale` (mu, N) is a
        safe-mutation factor per parent. Returns (population, state)."""
        select_key, noise_key = jax.random.split(key)
        filled = jnp.concatenate(
            [
                state.podium_scores > -jnp.inf,
                jnp.ones((self.num_parents - self.num_elites,), bool),
            ]
        )
        valid = filled.astype(jnp.float32)
        children = jnp.arange(self.population_size, dtype=jnp.int32)
        parent = jax.vmap(
            lambda c: self._pick_parent(jax.random.fold_in(select_key, c), valid)
        )(children)
        population = population_lib.Population(
            parents=state.parents,
            scale=scale,
            sigma=state.sigma,
            noise_key=noise_key,
            parent=parent.astype(jnp.int32),
            noise_index=children,
            sign=jnp.ones((self.population_size,), jnp.float32),
        )
        return population, state

    def evaluate(self, fitness_fn: Callable, population, fitness_key, source=None):
        """Minibatch fitness (lambda,) of the children."""
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

    def tell(self, population, fitness: jax.Array, state: GAState, source=None):
        """Keeps the top mu - E children as parent rows [E, mu). (state, metrics)."""
        source = noise_lib.generated() if source is None else source
        top = _ordered(fitness)[: self.num_parents - self.num_elites]
        rows = lax.map(
            lambda m: population_lib.member_params(population, source, m),
            top,
            batch_size=max(1, min(self.eval_chunk_size, top.shape[0])),
        )
        state = state.replace(
            parents=state.parents.at[self.num_elites :].set(rows),
            offspring_fitness=fitness[top],
            generation=state.generation + 1,
        )
        metrics = fitness_metrics(fitness) | {
            "sigma": state.sigma,
            "parent_fitness_min": fitness[top[-1]],
        }
        return state, metrics

    def candidates(self, state: GAState) -> jax.Array:
        """The C elite candidates (C, N): the best offspring, best first."""
        start = self.num_elites
        return state.parents[start : start + self.num_candidates]

    def evaluate_candidates(self, validation_fn: Callable, state, key, chunk=8):
        """Validation scores (C,) of the candidates: validation_fn(params, key)."""
        return population_lib.evaluate_flat(
            validation_fn, self.unravel, self.candidates(state), key, chunk, self.axis
        )

    def record_validation(self, state: GAState, scores: jax.Array):
        """Merges the candidates' validation scores (C,) into the podium.

        Returns (state, metrics) with `improved` (a new podium entry) and
        `best_score` (the best validation score ever).
        """
        elites = self.num_elites
        merged = jnp.concatenate([state.podium_scores, scores.astype(jnp.float32)])
        merged = jnp.where(jnp.isnan(merged), -jnp.inf, merged)
        # Row i of `parents` holds the model scored by merged[i] for i < E + C.
        best = _ordered(merged)[:elites]
        new_scores = merged[best]
        improved = jnp.any((best >= elites) & (new_scores > -jnp.inf))
        state = state.replace(
            parents=state.parents.at[:elites].set(state.parents[best]),
            podium_scores=new_scores,
        )
        metrics = {
            "improved": improved,
            "best_score": new_scores[0],
            "candidate_score_max": jnp.max(scores),
        }
        return state, metrics

    def params(self, state: GAState):
        """The best model ever by validation (podium row 0) as a params pytree."""
        return self.unravel(state.parents[0])


def _check(lam, mu, elites, candidates, selection) -> None:
    if selection not in SELECTIONS:
        raise InputError(f"GA selection={selection!r} is unknown; valid: {SELECTIONS}")
    if not 1 <= elites < mu:
        raise InputError(
            f"GA num_elites={elites} must be in [1, num_parents={mu}) so that the "
            "parents hold at least one offspring"
        )
    if not 1 <= candidates <= mu - elites:
        raise InputError(
            f"GA num_elite_candidates={candidates} must be in [1, num_parents - "
            f"num_elites = {mu - elites}]: candidates are the kept offspring"
        )
    if lam < mu - elites:
        raise InputError(
            f"GA population_size={lam} is smaller than num_parents - num_elites = "
            f"{mu - elites}, the offspring kept each generation"
        )
