"""One orbax CheckpointManager per workdir: params, trainer state and metadata.

Each checkpoint has three items: `params` (so evaluation restores params only),
`train` (optimizer state, step, PRNG key data, data position, best score: everything
else needed to continue exactly) and `meta` (JSON: resolved config, vocabulary,
data fingerprint). Orbax writes into a temporary directory and renames it into
place, so a killed save leaves the previous checkpoint usable. The latest
`max_to_keep` checkpoints are kept, plus the best one by validation score.
"""

import os

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from nic_jax.errors import InputError

ITEMS = ("params", "train", "meta")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, ckpt_config, best_metric: str, read_only=False):
    """The workdir's manager; `best_metric` names the metrics entry to maximise."""
    policy = ocm.AnyPreservationPolicy(
        [
            ocm.LatestN(n=ckpt_config.max_to_keep),
            ocm.BestN(
                get_metric_fn=lambda metrics: metrics[best_metric],
                n=1,
                keep_checkpoints_without_metrics=False,
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        enable_async_checkpointing=ckpt_config.async_save and not read_only,
        read_only=read_only,
        create=not read_only,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir), item_names=ITEMS, options=options
    )


def save(manager, step: int, params, train, meta: dict, metrics=None) -> None:
    """Saves all three items at `step` (asynchronously when configured)."""
    manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            train=ocp.args.StandardSave(train),
            meta=ocp.args.JsonSave(meta),
        ),
        metrics=metrics,
        force=True,
    )


def restore(manager, step: int, abstract_params, abstract_train):
    """Restores (params, train, meta) at `step` against abstract (eval_shape) trees."""
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            train=ocp.args.StandardRestore(abstract_train),
            meta=ocp.args.JsonRestore(),
        ),
    )
    return restored.params, restored.train, restored.meta


def restore_params(manager, step: int, abstract_params):
    """Restores (params, meta) only, as evaluation does."""
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            meta=ocp.args.JsonRestore(),
        ),
    )
    return restored.params, restored.meta


def restore_meta(manager, step: int) -> dict:
    """The JSON metadata (config, vocabulary, fingerprint) of `step`."""
    return manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    ).meta


def best_step(manager, metric: str):
    """The step with the highest `metric` among kept checkpoints, or None."""
    scored = []
    for step in manager.all_steps():
        metrics = manager.metrics(step)
        if metrics and metric in metrics:
            scored.append((metrics[metric], step))
    return max(scored)[1] if scored else None


def check_vocabulary(meta: dict, ix_to_word: dict, where: str) -> None:
    """Refuses a checkpoint trained on another vocabulary (its ids mean other words)."""
    saved = meta.get("vocab", [])
    current = [ix_to_word[i] for i in sorted(ix_to_word)]
    if saved != current:
        diff = next((i for i, (a, b) in enumerate(zip(saved, current)) if a != b), None)
        detail = (
            f"word {diff + 1} is {saved[diff]!r} there and {current[diff]!r} here"
            if diff is not None
            else f"{len(saved)} words there, {len(current)} here"
        )
        raise InputError(
            f"checkpoint {where} was trained on another vocabulary than the data "
            f"({detail}); use the data it was trained on"
        )
