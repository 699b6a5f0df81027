"""NIC-ES training of a caption decoder: es-img-captioning's (mu, lambda) GA with
validation elitism (Such et al. 2017 style genetic algorithm).

Each generation draws `es.population_size` children, each a parent (chosen
uniformly or by tournament among the podium and the top offspring of the previous
generation) plus sigma eps, and scores them on one batch with the on-device
fitness. The `es.num_elite_candidates` best children are then scored on
`es.num_val_items` validation images (CIDEr-D of greedy captions) and merged into
the podium of the `es.num_elites` best models ever; the exported model is podium
row 0, the best validation score ever. At most mu parameter vectors are stored.
"""

from nic_jax.errors import InputError
from nic_jax.evolution.ga import GA
from nic_jax.train import evolution


def build_strategy(config, template, axis=None) -> GA:
    """`GA` from `config.es`; `axis` (a mesh axis name) splits the children and
    the elite candidates (see `evolution.EvolutionLoop`)."""
    es = config.es
    if es.get("noise_rank", 0) != 0:
        raise InputError(
            f"config es.noise_rank={es.noise_rank}: low-rank (EGGROLL) noise is for "
            "NIC-NES (trainer nes), whose members share theta and so one x W per "
            "chunk; NIC-ES children have different parents. Use es.noise_rank=0"
        )
    return GA(
        template,
        es.population_size,
        es.num_parents,
        num_elites=es.num_elites,
        num_elite_candidates=es.num_elite_candidates,
        selection=es.selection,
        tournament_size=es.tournament_size,
        eval_chunk_size=es.eval_chunk_size,
        axis=axis,
    )


def elite_validation(run, strategy: GA, val_reward):
    """after_tell: scores the elite candidates on validation, updates the podium."""
    config = run.config
    batch = evolution.validation_batch(
        run.dataset.splits[config.evals.split],
        config.es.num_val_items,
        run.decoder.uses_att,
    )
    validation_fn = evolution.validation_fn(
        run.decoder, val_reward, batch, config.data.max_length
    )

    def after_tell(strategy_state, key):
        scores = strategy.evaluate_candidates(validation_fn, strategy_state, key)
        strategy_state, metrics = strategy.record_validation(strategy_state, scores)
        return strategy_state, metrics, metrics["improved"]

    return after_tell


def train_and_evaluate(config, workdir: str) -> dict:
    """Runs `es.num_steps` GA generations; returns the last validation scores."""
    return evolution.train(
        config,
        workdir,
        build_strategy,
        lambda strategy, state: strategy.params(state),
        elite_validation,
    )
