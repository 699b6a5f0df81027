"""Evaluates an ensemble of trained decoders: the library behind `nic_jax.ensemble`.

Members come from several workdirs (each's best validation checkpoint, as
`nic_jax.evaluate` picks it) and/or from the podium of a NIC-ES workdir (the GA's E
best models ever by validation score, `GAState.parents[:E]`). Every member is
scored alone and the ensemble (`decoding.ensemble.Ensemble`) decodes the split with
the same decoding options, so the result shows the ensemble against the mean and
the best of its members.
"""

import dataclasses
import json
import os

import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.flatten_util import ravel_pytree

from nic_jax.data.dataset import load_dataset
from nic_jax.decoding.ensemble import Ensemble
from nic_jax.errors import InputError
from nic_jax.evaluation.restore import load_workdir_model
from nic_jax.evaluation.workdir import split_scorer
from nic_jax.train import checkpoint


@dataclasses.dataclass(frozen=True)
class Member:
    """One ensemble member: its decoder, params and where it came from."""

    decoder: object
    params: dict
    source: str


def workdir_members(workdirs, step=None) -> tuple[list, object]:
    """One member per workdir; returns (members, the first workdir's model)."""
    models = [load_workdir_model(w, step) for w in workdirs]
    members = [
        Member(m.decoder, m.params, f"{w}@{m.step}") for w, m in zip(workdirs, models)
    ]
    return members, models[0]


def _podium_rows(manager, step: int, where: str):
    """(parents (mu, N), podium scores (E,)) of a GA checkpoint, as saved."""
    train = manager.restore(
        step, args=ocp.args.Composite(train=ocp.args.StandardRestore())
    ).train
    strategy = train.get("strategy", {}) if isinstance(train, dict) else {}
    if "podium_scores" not in strategy:
        raise InputError(
            f"checkpoint {where} step {step} holds no GA "
            "podium; --podium needs a NIC-ES workdir (config trainer 'es')"
        )
    return np.asarray(strategy["parents"]), np.asarray(strategy["podium_scores"])


def podium_members(workdir: str, step=None) -> tuple[list, object]:
    """The filled podium rows of a NIC-ES workdir, best first, as members."""
    model = load_workdir_model(workdir, step)
    manager = checkpoint.make_manager(
        workdir, model.config.ckpt, "unused", read_only=True
    )
    parents, scores = _podium_rows(manager, model.step, model.where)
    manager.close()
    _, unravel = ravel_pytree(model.params)
    members = [
        Member(model.decoder, unravel(parents[row]), f"{workdir}@podium{row}")
        for row in range(len(scores))
        if np.isfinite(scores[row])
    ]
    return members, model


def _mean_and_best(scores: list) -> tuple[dict, dict]:
    keys = scores[0].keys()
    mean = {k: float(np.mean([s[k] for s in scores])) for k in keys}
    best = {k: float(np.max([s[k] for s in scores])) for k in keys}
    return mean, best


def evaluate_ensemble(
    members, reference, split="test", combine="mean_prob", decoding=None, **kw
) -> dict:
    """Scores each member and the ensemble of all on `split`.

    reference: a `WorkdirModel` whose config names the data and decoding defaults;
    decoding: overrides of its `config.evals` (beam_size, max_len, ...);
    kw: num_images (-1: all), out (a JSON path to write the result to).
    """
    if len(members) < 2:
        raise InputError(f"an ensemble needs >= 2 members; found {len(members)}")
    config = reference.config
    need_att = any(m.decoder.uses_att for m in members)
    dataset = load_dataset(config.data, config.model.fc_feat_size, need_att, (split,))
    checkpoint.check_vocabulary(reference.meta, dataset.ix_to_word, reference.where)
    num_images = kw.get("num_images", -1)
    score, _ = split_scorer(config, dataset, split, num_images, decoding)
    member_scores = [score(m.decoder, m.params)[0] for m in members]
    ensemble = Ensemble(tuple(m.decoder for m in members), combine)
    scores, captions = score(ensemble, tuple(m.params for m in members))
    mean, best = _mean_and_best(member_scores)
    result = {
        "split": split,
        "combine": combine,
        "ensemble": scores,
        "member_mean": mean,
        "member_best": best,
        "members": [{"source": m.source, **s} for m, s in zip(members, member_scores)],
        "captions": [{"image_id": k, "caption": v} for k, v in captions.items()],
    }
    if kw.get("out"):
        os.makedirs(os.path.dirname(os.path.abspath(kw["out"])), exist_ok=True)
        with open(kw["out"], "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        logging.info("wrote %s", kw["out"])
    return result
