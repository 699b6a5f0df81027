"""Checkpoints of es-img-captioning (rubencart/NES-img-captioning): `fc_caption`.

Its FCModel (src/captioning/nets.py) is self-critical.pytorch's FC model without
dropout, evolved by NIC-ES / NIC-NES. Elites and offspring are saved as
`torch.save(policy_net.state_dict())` with the FC names (`img_embed`, `core.i2h`,
`core.h2h`, `embed`, `logit`). Sizes are in the run's `experiment.json` (written to
its log dir): `policy_options.model_options` (older versions:
`caption_model_options`) with `input_encoding_size`, `rnn_size`, `fc_feat_size`.
The vocabulary is the `ix_to_word` of the cocotalk json the run read
(`caption_options.input_json`), or the file `--vocab` names. With virtual batch
norm (`vbn`) the model normalises with the statistics of each batch, which has no
per-image equivalent, so such models are refused.
"""

import os

from nic_jax.conversion.source import SourceModel, option, sizes, vocabulary
from nic_jax.conversion.torch_files import load_json, load_state_dict
from nic_jax.errors import InputError

_SIZES = ("fc_feat_size", "input_encoding_size", "rnn_size")


def _model_options(experiment: dict, where: str) -> dict:
    policy = experiment.get("policy_options") or {}
    net = policy.get("net", experiment.get("net"))
    if net is not None and net != "fc_caption":
        raise InputError(
            f"{where}: net is {net!r}; --source=es_fc converts 'fc_caption' models"
        )
    options = policy.get("model_options") or experiment.get("caption_model_options")
    if not isinstance(options, dict):
        raise InputError(
            f"{where}: has no policy_options.model_options (or "
            "caption_model_options); expected the experiment.json of an "
            "es-img-captioning run"
        )
    if policy.get("vbn") or options.get("vbn"):
        raise InputError(
            f"{where}: vbn is set; virtual batch norm normalises with each batch's "
            "statistics and has no per-image equivalent in nic_jax"
        )
    return options


def _vocab_path(experiment: dict, vocab_path: str, where: str) -> str:
    if vocab_path:
        return vocab_path
    input_json = (experiment.get("caption_options") or {}).get("input_json")
    if not input_json or not os.path.isfile(input_json):
        raise InputError(
            f"{where}: caption_options.input_json is {input_json!r}, not a file "
            "here; name the run's cocotalk json with --vocab"
        )
    return input_json


def read_fc(model_path: str, infos_path: str, vocab_path: str = "") -> SourceModel:
    """An `fc_caption` state_dict with its experiment.json (`--infos`)."""
    where = f"--infos={infos_path}"
    experiment = load_json(infos_path, "infos")
    if not isinstance(experiment, dict):
        raise InputError(f"{where}: expected a JSON object (an experiment.json)")
    options = _model_options(experiment, where)
    model = {"name": "fc", **sizes(options, _SIZES, f"{where} model_options")}
    model["drop_prob_lm"] = 0.0  # es-img-captioning's FC model has no dropout
    vocab_file = _vocab_path(experiment, vocab_path, where)
    cocotalk = load_json(vocab_file, "vocab")
    raw_vocab = option(cocotalk, "ix_to_word", f"--vocab={vocab_file}")
    return SourceModel(
        model=model,
        ix_to_word=vocabulary(raw_vocab, f"--vocab={vocab_file}"),
        state_dict=load_state_dict(model_path),
        renames={},
        origin={
            "source": "es_fc",
            "model": model_path,
            "infos": infos_path,
            "vocab": vocab_file,
        },
    )
