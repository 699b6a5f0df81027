"""Low-rank (EGGROLL) NES noise: the noise law, the low-rank forward against
explicit perturbed copies W + sigma A B^T / sqrt(r), antithetic pairs, the NES
estimator against the explicit sum, the mesh split, and learning on digits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from jax.flatten_util import ravel_pytree

from configs.nes import get_config as nes_config
from nic_jax import parallel
from nic_jax.benchmarks.workload import build_model
from nic_jax.errors import InputError
from nic_jax.evolution import lowrank
from nic_jax.evolution.nes import NES
from nic_jax.experiments import digits
from nic_jax.train import evolution
from nic_jax.train import nes as nes_trainer

VOCAB = 40  # V + 1 = 41 outputs: a width no other layer has
FEAT, SIZE = 24, 12


def _explicit(base, factors, coef) -> dict:
    """W + coef * A @ B.T (matrices) / w + coef * eps (others), in float64 numpy."""

    def one(w, f):
        w = np.asarray(w, np.float64)
        if isinstance(f, lowrank.LowRank):
            a, b = np.asarray(f.a, np.float64), np.asarray(f.b, np.float64)
            return (w + coef * a @ b.T).astype(np.float32)
        return (w + coef * np.asarray(f, np.float64)).astype(np.float32)

    return jax.tree.map(one, base, factors)


def _teacher_logprobs(decoder, feats, tokens):
    """fitness_fn(params, key) -> all log-probs (T, B, V + 1) along `tokens`."""

    def fitness(params, key):
        ctx = decoder.encode(params, feats)
        state = decoder.init_state(params, ctx)

        def body(state, token):
            logprobs, state = decoder.step(params, ctx, state, token)
            return state, logprobs

        return lax.scan(body, state, tokens.T)[1]

    return fitness


@functools.cache
def _model(name):
    decoder, params = build_model(name, SIZE, FEAT, 5, VOCAB)
    rng = np.random.default_rng(0)
    feats = {"fc": jnp.asarray(rng.standard_normal((3, FEAT), np.float32))}
    if decoder.uses_att:
        feats["att"] = jnp.asarray(rng.standard_normal((3, 5, FEAT), np.float32))
    tokens = jnp.asarray(rng.integers(0, VOCAB + 1, (3, 6)), jnp.int32)
    return decoder, params, feats, tokens


def _factors_fn(key, template, rank):
    """index -> member_factors, compiled once (eager draws compile per shape)."""
    return jax.jit(lambda index: lowrank.member_factors(key, index, template, rank))


def _strategy(params, num_pairs=3, rank=2, **kwargs):
    return lowrank.LowRankNES(
        params, num_pairs, optax.adam(1e-3), rank=rank, eval_chunk_size=4, **kwargs
    )


def test_matrix_noise_is_rank_r_with_unit_variance_entries():
    """Over 2,000 members every entry of A B^T / sqrt(r) has mean 0, variance 1
    (as full-rank noise) and entries are uncorrelated; a bias gets N(0, 1)."""
    template = {"w": jax.ShapeDtypeStruct((20, 30), jnp.float32)}
    template["b"] = jax.ShapeDtypeStruct((30,), jnp.float32)
    draw = _factors_fn(jax.random.key(0), template, 4)
    members = jax.vmap(draw)(jnp.arange(2000))
    assert members["w"].a.shape == (2000, 20, 4) and members["w"].b.shape[1:] == (30, 4)
    eps = np.asarray(jax.vmap(lowrank.dense)(members["w"])).reshape(2000, -1)
    assert all(np.linalg.matrix_rank(e.reshape(20, 30)) == 4 for e in eps[:5])
    for noise in [eps, np.asarray(members["b"])]:
        assert np.abs(noise.mean(0)).max() < 0.15  # a mean of 2,000: std 0.022
        assert np.abs(noise.var(0) - 1.0).max() < 0.25
        assert abs(noise.var(0).mean() - 1.0) < 0.03
    corr = np.corrcoef(eps[:, :50].T)[np.triu_indices(50, 1)]
    assert np.abs(corr).max() < 0.15  # the same row or column: still uncorrelated
    np.testing.assert_array_equal(draw(7)["w"].a, draw(7)["w"].a)  # from the key
    assert not np.allclose(draw(7)["w"].a, draw(8)["w"].a)


@pytest.mark.parametrize("product", ["shared", "stacked", "grouped"])
@pytest.mark.parametrize("name", ["fc", "showtell"])
def test_population_fitness_equals_explicit_perturbed_copies(name, product):
    """fc: every matrix in a Linear or an Embed (the low-rank forward);
    showtell: raw matrix params too (materialised per member). Every form of
    the Linear products (`lowrank_products`); grouped: 4 members in flight in
    groups of 4, then the remaining 2 in a group of 2."""
    decoder, params, feats, tokens = _model(name)
    strategy = _strategy(params, num_pairs=3, rank=2, product=product)
    population, _ = strategy.ask(jax.random.key(1), strategy.init(params, 0.05))
    member_decoder = lowrank.population_decoder(strategy, decoder)
    fitness_fn = _teacher_logprobs(member_decoder, feats, tokens)
    got = jax.jit(lambda pop: strategy.evaluate(fitness_fn, pop, jax.random.key(2)))(
        population
    )
    reference = jax.jit(_teacher_logprobs(decoder, feats, tokens))
    draw = _factors_fn(population.noise_key, strategy.template, 2)
    base = strategy.unravel(population.parents[0])
    for member in range(population.size):
        factors = draw(population.noise_index[member])
        coef = float(population.sign[member] * population.sigma)
        want = reference(_explicit(base, factors, coef), None)
        np.testing.assert_allclose(got[member], want, rtol=0, atol=1e-5)
    unperturbed = reference(params, None)
    assert np.abs(np.asarray(got[0]) - np.asarray(unperturbed)).max() > 1e-3


def _sub_jaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jax.extend.core.Jaxpr):
        return [value]
    if isinstance(value, tuple | list):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def _shapes_in(jaxpr) -> set:
    """Shapes of every value computed in `jaxpr`, nested jaxprs included."""
    shapes = set()
    for eqn in jaxpr.eqns:
        shapes |= {tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape")}
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                shapes |= _shapes_in(sub)
    return shapes


@pytest.mark.parametrize("product", ["shared", "grouped"])
def test_forward_shares_the_base_matrices_and_never_builds_member_copies(product):
    """The shared form holds W once; the grouped form one copy per group, here
    of all 4 members in flight (then of the last 2). The stacked form (a CPU's
    from 128 rows) holds one per member in flight, as full-rank members do."""
    decoder, params, feats, tokens = _model("fc")
    kernels = {
        leaf.shape for leaf in jax.tree.leaves(params) if leaf.ndim == 2
    }  # (24, 12) (12, 60) (41, 12) (12, 41)
    strategies = {
        "low": _strategy(params, product=product),
        "full": NES(params, 3, optax.sgd(1.0)),
    }
    per_member = {}
    for kind, strategy in strategies.items():
        member_decoder = lowrank.population_decoder(strategy, decoder)
        assert (kind == "low") == isinstance(member_decoder, lowrank.LowRankDecoder)
        fitness_fn = _teacher_logprobs(member_decoder, feats, tokens)
        population, _ = strategy.ask(jax.random.key(1), strategy.init(params, 0.05))
        evaluate = functools.partial(
            strategy.evaluate, fitness_fn, fitness_key=jax.random.key(2)
        )
        shapes = _shapes_in(jax.make_jaxpr(evaluate)(population).jaxpr)
        copies = {s for s in shapes if len(s) >= 3 and s[-2:] in kernels}
        per_member[kind] = {s for s in copies if np.prod(s[:-2]) > 1}
    assert per_member["full"]  # the check sees per-member copies when they exist
    assert not per_member["low"], per_member["low"]


def test_antithetic_members_are_opposite_and_share_their_fitness_key():
    _, params, _, _ = _model("fc")
    strategy = _strategy(params, num_pairs=4)
    population, _ = strategy.ask(jax.random.key(3), strategy.init(params, 0.1))
    base = strategy.unravel(population.parents[0])
    explicit = jax.jit(
        lambda m: lowrank.materialize(strategy.member_params(population, base, m))
    )
    delta = [
        ravel_pytree(explicit(m))[0] - population.parents[0]
        for m in range(population.size)
    ]
    for i in range(4):
        np.testing.assert_allclose(delta[2 * i], -delta[2 * i + 1], atol=1e-7)
        assert float(jnp.abs(delta[2 * i]).max()) > 0.05
        assert population.noise_index[2 * i] == population.noise_index[2 * i + 1]
    assert float(jnp.abs(delta[0] - delta[2]).max()) > 0.05  # pairs differ


@pytest.mark.parametrize("chunk", [0, 2, 5])
def test_estimator_equals_the_explicit_weighted_sum(chunk):
    """g = sigma * sum_i (rank+_i - rank-_i) A_i B_i^T / sqrt(r) / (2n), pairs
    contracted 2 at a time (5 pairs: one padded), all at once, or the default's
    (`FACTOR_CHUNK`) at a time."""
    _, params, _, _ = _model("fc")
    strategy = _strategy(params, num_pairs=5, rank=3, noise_chunk_size=chunk)
    sigma = 0.02
    population, _ = strategy.ask(jax.random.key(4), strategy.init(params, sigma))
    fitness = jax.random.normal(jax.random.key(5), (10,))
    got = jax.jit(strategy.gradient)(population, fitness)
    order = np.argsort(np.asarray(fitness))
    centred = np.empty(10)
    centred[order] = np.arange(10) / 9.0 - 0.5
    want = np.zeros(strategy.num_params)
    zeros = jax.tree.map(np.zeros_like, params)
    draw = _factors_fn(population.noise_key, strategy.template, 3)
    for pair in range(5):
        factors = draw(population.noise_index[2 * pair])
        eps = ravel_pytree(_explicit(zeros, factors, 1.0))[0]
        want += (centred[2 * pair] - centred[2 * pair + 1]) * np.asarray(
            eps, np.float64
        )
    want *= sigma / 10
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_split_over_four_devices_equals_one_device():
    """Fitness and direction, members and pairs split over the 4 fake devices
    (the forward is the equality test's; a cheap fitness keeps compiling fast)."""
    _, params, _, _ = _model("fc")

    def fitness(lp, key):
        leaves = jax.tree.leaves(lowrank.materialize(lp))
        return sum(jnp.mean(jnp.tanh(leaf)) for leaf in leaves)

    def generation(strategy, state):
        population, state = strategy.ask(jax.random.key(6), state)
        values = strategy.evaluate(fitness, population, jax.random.key(7))
        return values, strategy.gradient(population, values)

    single = _strategy(params, num_pairs=5)
    want = jax.jit(functools.partial(generation, single))(single.init(params, 0.05))
    # 10 members padded to 12 (3 a device); 5 pairs padded to 8 in the psum
    split = _strategy(params, num_pairs=5, axis=parallel.POPULATION)
    spmd = parallel.spmd(functools.partial(generation, split), parallel.sub_mesh(4))
    got = jax.jit(spmd)(split.init(params, 0.05))
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


def test_refuses_rank_zero_unknown_products_and_safe_mutation_scales():
    _, params, _, _ = _model("fc")
    with pytest.raises(InputError, match="es.noise_rank=0"):
        _strategy(params, rank=0)
    with pytest.raises(InputError, match="es.lowrank_product='fused'.*grouped"):
        _strategy(params, product="fused")
    strategy = _strategy(params)
    state = strategy.init(params, 0.1)
    with pytest.raises(InputError, match="es.safe_mutation"):
        strategy.ask(jax.random.key(0), state, jnp.ones(strategy.num_params))


def test_grouped_products_split_over_four_devices_equal_the_shared_form():
    """The grouped form's batching rule inside `spmd` (each device vmaps its 3
    of 10 members, padded to 12) against the shared form on one device."""
    decoder, params, feats, tokens = _model("fc")

    def logprobs(strategy):
        member_decoder = lowrank.population_decoder(strategy, decoder)
        fitness_fn = _teacher_logprobs(member_decoder, feats, tokens)
        population, _ = strategy.ask(jax.random.key(6), strategy.init(params, 0.05))
        return strategy.evaluate(fitness_fn, population, jax.random.key(7))

    single = _strategy(params, num_pairs=5, product="shared")
    want = jax.jit(functools.partial(logprobs, single))()
    split = _strategy(params, num_pairs=5, product="grouped", axis=parallel.POPULATION)
    spmd = parallel.spmd(functools.partial(logprobs, split), parallel.sub_mesh(4))
    got = jax.jit(spmd)()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def _digits_run(strategy, config, splits, generations):
    """NIC-NES on the digits MLP; fitness on the explicit member params (the noise
    law is what is compared here, not the forward)."""
    train = tuple(jnp.asarray(a) for a in splits["train"])
    adapt = isinstance(strategy, lowrank.LowRankNES)

    @jax.jit
    def generation(state, key):
        ask_key, batch_key = jax.random.split(key)
        rows = jax.random.choice(batch_key, train[0].shape[0], (config.batch_size,))
        fitness = functools.partial(
            digits.neg_cross_entropy, x=train[0][rows], y=train[1][rows]
        )
        if adapt:
            fitness = lambda lp, key, f=fitness: f(lowrank.materialize(lp), key)
        population, state = strategy.ask(ask_key, state)
        values = strategy.evaluate(fitness, population, batch_key)
        return strategy.tell(population, values, state)[0]

    params = digits.init_mlp(jax.random.key(0), config.hidden)
    state = strategy.init(params, config.nes_sigma)
    for g in range(generations):
        state = generation(state, jax.random.fold_in(jax.random.key(1), g))
    test_x, test_y = (jnp.asarray(a) for a in splits["test"])
    return float(digits.accuracy(strategy.params(state), None, test_x, test_y))


def test_low_rank_learns_digits_about_as_well_as_full_rank_per_generation():
    """Same MLP, pairs, sigma, Adam and minibatches: after 40 generations the
    rank-1 run's test accuracy is within 5 points of the full-rank run's (measured
    88.3% / 86.9%; 91.1% / 90.6% after 60), and both far above chance (10%)."""
    config = digits.DigitsConfig()
    splits = digits.load_splits(0)
    template = digits.init_mlp(jax.random.key(0), config.hidden)
    make = functools.partial(
        optax.adam, config.nes_learning_rate
    )  # fresh state per run
    common = dict(l2coeff=config.nes_l2coeff)
    full = NES(template, config.nes_pairs, make(), **common)
    low = lowrank.LowRankNES(template, config.nes_pairs, make(), rank=1, **common)
    accuracy = {
        k: _digits_run(s, config, splits, 40) for k, s in [("full", full), ("low", low)]
    }
    assert accuracy["full"] > 0.8, accuracy
    assert accuracy["low"] >= accuracy["full"] - 0.05, accuracy


def test_config_noise_rank_selects_low_rank_nes_without_a_noise_table():
    config = nes_config("tiny").copy_and_resolve_references()
    _, params, _, _ = _model("fc")
    assert config.es.noise_rank == 0 and config.es.noise == "table"
    assert type(nes_trainer.build_strategy(config, params)) is NES
    config.es.noise_rank = 3
    strategy = nes_trainer.build_strategy(config, params)
    assert isinstance(strategy, lowrank.LowRankNES) and strategy.rank == 3
    assert strategy.product == "auto"
    config.es.lowrank_product = "grouped"
    strategy = nes_trainer.build_strategy(config, params)
    assert lowrank.population_decoder(strategy, None).product == "grouped"
    assert strategy.num_pairs == config.es.num_pairs
    assert evolution.noise_source(config.es, 0).table is None  # factors from keys
