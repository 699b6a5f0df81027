"""Refuses config values that cannot run, naming the field, before anything runs.

A locked ml_collections `ConfigDict` already refuses unknown fields and values of
the wrong type (`--config.model.rnn_sise=3`, `--config.model.rnn_size=abc`; the
CLIs print them through `nic_jax.app`). What it lets through are values of the
right type that fail later, deep inside a trainer: a zero batch size or logging
interval (a ZeroDivisionError), a dropout rate of 1.5, a best metric that no
evaluation computes (a KeyError after the first validation). `check_config`
refuses those with `InputError`. Fields a config lacks (the GA config has no
`xe` group, configs written by older versions) are skipped; names of models,
trainers, fitness functions, ... are checked by their registries.
"""

import math

from nic_jax.errors import InputError
from nic_jax.evaluation.coco import METRIC_GROUPS
from nic_jax.evolution import lowrank_products, safe_mutations

_POSITIVE_INT = (
    "data.batch_size",
    "data.max_length",
    "data.seq_per_img",
    "model.fc_feat_size",
    "model.att_feat_size",
    "model.att_hid_size",
    "model.input_encoding_size",
    "model.rnn_size",
    "model.num_layers",
    "model.nn_map_size",
    "model.num_regions",
    "xe.num_epochs",
    "scst.num_epochs",
    "es.num_steps",
    "es.batch_size",
    "es.num_pairs",
    "es.population_size",
    "es.num_parents",
    "es.num_elites",
    "es.num_elite_candidates",
    "es.tournament_size",
    "es.eval_chunk_size",
    "es.noise_table_size",
    "evals.every_steps",
    "evals.batch_size",
    "evals.beam_size",
    "ckpt.every_steps",
    "ckpt.max_to_keep",
    "log.every_steps",
    "finetune.eval_every_steps",
)
_NON_NEGATIVE_INT = (
    "es.noise_chunk_size",
    "evals.max_len",
    "es.patience",
    "numerics.max_rollbacks",
)
_ALL_OR_POSITIVE_INT = ("evals.num_images", "es.num_val_items")
_POSITIVE_NUMBER = (
    "optim.learning_rate",
    "optim.eps",
    "es.learning_rate",
    "es.eps",
    "es.sigma",
    "es.stdev_divisor",
    "es.bs_multiplier",
    "es.stepsize_divisor",
)
_NON_NEGATIVE_NUMBER = (
    "optim.weight_decay",
    "optim.grad_clip_value",
    "es.l2coeff",
    "es.momentum",
    "scst.cider_reward_weight",
    "scst.bleu_reward_weight",
    "es.cider_reward_weight",
    "es.bleu_reward_weight",
    "budget.train_s",
    "budget.eval_every_s",
    "compute.compilation_cache_min_compile_s",
)
_FRACTION = ("model.drop_prob_lm", "optim.b1", "optim.b2", "es.b1", "es.b2")
_SHRINK = ("numerics.rollback_factor",)
MATMUL_PRECISIONS = ("default", "bfloat16", "tensorfloat32", "float32")
_CHOICES = {
    "data.name": ("shapes", "cocotalk"),
    "optim.name": ("adam",),
    "es.optimizer": ("adam", "sgd"),
    "es.noise": ("table", "generated"),
    "es.lowrank_product": lowrank_products.PRODUCTS,
    "es.selection": ("uniform", "tournament"),
    "mesh.nes_gradient": ("psum", "replicated"),
    "evals.backend": ("jax", "coco"),
    "es.safe_mutation": safe_mutations.KINDS,
    "compute.matmul_precision": MATMUL_PRECISIONS,
}
_MISSING = object()
# trainers that add val/CIDEr-D (on-device, train df) to the validation scores
_CIDER_D_TRAINERS = ("scst", "nes", "es")


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "get") or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _refuse(field: str, value, expected: str) -> None:
    raise InputError(f"config {field}={value!r}; expected {expected}")


def _check_numbers(config) -> None:
    rules = (
        (_POSITIVE_INT, lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        (_NON_NEGATIVE_INT, lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        (
            _ALL_OR_POSITIVE_INT,
            lambda v: _is_int(v) and (v == -1 or v >= 1),
            "-1 (all) or an integer >= 1",
        ),
        (_POSITIVE_NUMBER, lambda v: _is_number(v) and v > 0, "a number > 0"),
        (_NON_NEGATIVE_NUMBER, lambda v: _is_number(v) and v >= 0, "a number >= 0"),
        (_FRACTION, lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        (_SHRINK, lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    )
    for fields, ok, expected in rules:
        for field in fields:
            value = _get(config, field)
            if value is not _MISSING and not ok(value):
                _refuse(field, value, expected)


def _check_choices(config) -> None:
    for field, valid in _CHOICES.items():
        value = _get(config, field)
        if value is not _MISSING and value not in valid:
            _refuse(field, value, f"one of {list(valid)}")
    for field in ("evals.metrics", "evals.test_metrics"):
        groups = _get(config, field)
        if groups is not _MISSING and not set(groups) <= set(METRIC_GROUPS):
            _refuse(field, tuple(groups), f"names among {list(METRIC_GROUPS)}")
    sizes = _get(config, "model.hidden_sizes")
    if sizes is not _MISSING and not all(_is_int(s) and s >= 1 for s in sizes):
        _refuse("model.hidden_sizes", sizes, "integers >= 1 (or () for rnn_size)")


def validation_metrics(config) -> list:
    """The names `Run.validate` logs (without the split prefix)."""
    names = []
    for group in _get(config, "evals.metrics") or ():
        names += [f"Bleu_{n}" for n in range(1, 5)] if group == "Bleu" else [group]
    if _get(config, "trainer") in _CIDER_D_TRAINERS:
        names.append("CIDEr-D")
    return names


def _check_best_metric(config) -> None:
    best = _get(config, "evals.best_metric")
    if best is _MISSING or _get(config, "evals.metrics") is _MISSING:
        return
    valid = validation_metrics(config)
    if best not in valid:
        _refuse("evals.best_metric", best, f"a validation score, one of {valid}")


def check_config(config) -> None:
    """Raises `InputError` naming the first field whose value cannot run."""
    _check_numbers(config)
    _check_choices(config)
    _check_best_metric(config)
