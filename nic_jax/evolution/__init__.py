"""The evolution engine: strategies over implicit populations, pure and jit-able.

NIC-NES and NIC-ES of es-img-captioning (and any evosax strategy) behind evosax's
ask / tell shape. A member is (parent row, noise index, sign) over a generation key;
its noise is regenerated where it is used, so memory does not grow with population P.
All parameters are flat (N,) vectors (`jax.flatten_util.ravel_pytree` order);
`strategy.unravel` turns one back into the params pytree.

One generation, the same for every strategy (jit the whole function once; bind the
strategy and the fitness function with functools.partial):

    population, state = strategy.ask(key, state[, scale])
    fitness = strategy.evaluate(fitness_fn, population, fitness_key, source)  # (P,)
    state, metrics = strategy.tell(population, fitness, state, source)
    params = strategy.params(state)

with `state = NES.init(params, sigma)`, `GA.init(params, sigma)` or
`EvosaxStrategy.init(key, params)`. States are flax struct pytrees (checkpointable).

`fitness_fn(params_pytree, key) -> scalar` is any function, higher is better; data
enter by closure (`functools.partial(fn, batch=batch)` for the captioning fitnesses
of `fitness.py`). A member's key is shared by the two members of an antithetic pair
(same batch draw, same sampling noise). `source` is a `noise.NoiseSource` (None =
generated).

Modules:
* `noise`: `NoiseSource`, `generated(chunk_size)`, `shared_table(seed, size)`,
  `standard_noise(source, key, index, N)`, `weighted_noise_sum(...)` (chunked
  sum_i w_i eps_i, never (P, N)).
* `population`: `Population` (parents (M, N), scale, sigma, noise_key and (P,)
  arrays parent / noise_index / sign), `antithetic`, `member_params`,
  `evaluate(fitness_fn, unravel, population, source, key, chunk_size)` (`lax.map`
  over chunks of a `vmap`), `evaluate_flat` for explicit rows.
* `ranks`: `centered_ranks` (OpenAI ES `compute_centered_ranks`).
* `nes`: `NES(template, num_pairs, optimizer, l2coeff, divide_by_sigma, ...)`,
  `NESState(theta, opt_state, sigma, lr_scale, generation)`; `gradient(...)`;
  metrics include `update_ratio` = ||delta theta|| / ||theta||.
* `lowrank`: EGGROLL rank-r noise A B^T / sqrt(r) per weight matrix
  (`es.noise_rank`): `LowRankNES(..., rank=r)` hands each member's fitness a
  `LowRankParams`; `population_decoder(strategy, decoder)` runs x W once for the
  vmapped members plus sigma (x A) B^T per member; `materialize` gives explicit
  params.
* `ga`: `GA(template, population_size, num_parents, num_elites,
  num_elite_candidates, selection, tournament_size)`, `GAState(parents (mu, N),
  podium_scores, offspring_fitness, sigma, generation)`; after `tell`,
  `evaluate_candidates(validation_fn, state, key)` and
  `record_validation(state, scores)` update the podium (metrics `improved`,
  `best_score`); `params(state)` is the best model ever.
* `safe_mutations`: `mutation_scale(kind, params, outputs_fn, underflow, vector)`
  for SM-PROPORTIONAL / SM-G-SUM / SM-G-ABS / SM-VECTOR (pass the result as
  `scale` to `ask`: (N,) for NES, (mu, N) stacked per parent for the GA),
  `scale_rows(kind, unravel, parents, ...)` for the GA's (mu, N),
  `greedy_logprob_groups(decoder, feats)` as the captioning `outputs_fn`,
  `load_sensitivity_vector(path, N, underflow)`.
* `annealing`: `AnnealConfig`, `init(batch_size)`, `anneal(config, anneal_state,
  strategy_state, completed_generation, improved)` -> sigma / lr_scale in the
  strategy state, batch size in the anneal state.
* `evosax_adapter`: `EvosaxStrategy(name, template, population_size, ...)` for any
  evosax 0.3 algorithm ("SNES", "CMA_ES", "Open_ES" alias "OpenES", "SimpleGA", ...).

Sharding (`nic_jax.parallel`): `NES(..., axis=...)` and `GA(..., axis=...)` split
the members over a mesh axis when the generation runs as one program per device
(`parallel.spmd`): each device evaluates its slice of the member indices with
the same `population.evaluate` (and NES sums its slice of pairs with
`weighted_noise_sum`), so only fitness scalars (and one (N,) psum) cross devices.
"""
