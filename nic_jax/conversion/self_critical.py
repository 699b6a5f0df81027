"""Checkpoints of ruotianluo/self-critical.pytorch: FCModel and TopDownModel.

`train.py` there saves `model.pth` (`model.state_dict()`) and `infos_<id>.pkl`, a
dict with `opt` (the argparse Namespace of the run: sizes, dropout, caption_model)
and `vocab` (`ix_to_word`, string keys '1'..'V'). Sizes come from `opt`; the
state_dict must then match them exactly.

FCModel (models/FCModel.py) has exactly nic_jax's FC names. TopDownModel
(models/AttModel.py; Anderson et al. 2018) wraps its embeddings in nn.Sequential
(`embed.0`, `fc_embed.0`, `att_embed.0`); with `use_bn` its region encoder has
BatchNorm1d layers, which nic_jax folds into the neighbouring linear maps using
their running statistics (exact in evaluation, where PyTorch uses them too).
"""

from absl import logging

from nic_jax.conversion.batchnorm import fold_topdown_batchnorm
from nic_jax.conversion.source import SourceModel, option, sizes, vocabulary
from nic_jax.conversion.torch_files import load_infos_pickle, load_state_dict
from nic_jax.errors import InputError

_TOPDOWN_RENAMES = {"embed": "embed.0", "fc_embed": "fc_embed.0"}
_TOPDOWN_RENAMES["att_embed"] = "att_embed.0"


def _read_infos(infos_path: str, source: str, caption_models: tuple):
    infos = load_infos_pickle(infos_path)
    where = f"--infos={infos_path}"
    for field in ("opt", "vocab"):
        if field not in infos:
            raise InputError(
                f"{where}: has no {field!r}; expected the infos_<id>.pkl that "
                "self-critical.pytorch saves beside model.pth"
            )
    opt = infos["opt"]
    name = option(opt, "caption_model", f"{where} opt", default=None)
    if name is not None and str(name).lower() not in caption_models:
        raise InputError(
            f"{where}: opt.caption_model is {name!r}, but --source={source} converts "
            f"{' / '.join(caption_models)} models"
        )
    ix_to_word = vocabulary(infos["vocab"], f"{where} vocab")
    return opt, ix_to_word


def _origin(source, model_path, infos_path, opt) -> dict:
    return {
        "source": source,
        "model": model_path,
        "infos": infos_path,
        "caption_model": str(option(opt, "caption_model", "", default="")),
    }


def _no_vocab_flag(vocab_path: str) -> None:
    if vocab_path:
        raise InputError(
            f"--vocab={vocab_path}: self-critical.pytorch checkpoints carry their "
            "vocabulary in --infos; --vocab is for --source=es_fc"
        )


def read_fc(model_path: str, infos_path: str, vocab_path: str = "") -> SourceModel:
    """FCModel: `img_embed`, `core.i2h`, `core.h2h`, `embed`, `logit`."""
    _no_vocab_flag(vocab_path)
    opt, ix_to_word = _read_infos(infos_path, "sc_fc", ("fc",))
    where = f"--infos={infos_path} opt"
    model = {"name": "fc"}
    model.update(sizes(opt, ("fc_feat_size", "input_encoding_size", "rnn_size"), where))
    model["drop_prob_lm"] = float(option(opt, "drop_prob_lm", where, default=0.5))
    return SourceModel(
        model=model,
        ix_to_word=ix_to_word,
        state_dict=load_state_dict(model_path),
        renames={},
        origin=_origin("sc_fc", model_path, infos_path, opt),
    )


def _check_topdown_options(opt, where: str) -> None:
    if int(option(opt, "logit_layers", where, default=1)) != 1:
        raise InputError(
            f"{where}: logit_layers is {opt.logit_layers}; only the default single "
            "output layer (logit_layers=1) can be converted"
        )
    if option(opt, "use_box", where, default=0):
        raise InputError(
            f"{where}: use_box is set; box features appended to the regions are not "
            "read by nic_jax, convert a model trained without --use_box"
        )
    if option(opt, "norm_att_feat", where, default=0):
        logging.warning(
            "%s: norm_att_feat is set; give nic_jax L2-normalised region features",
            where,
        )


def read_topdown(model_path: str, infos_path: str, vocab_path: str = "") -> SourceModel:
    """TopDownModel: embeddings, `ctx2att`, `logit`, `core.att_lstm`,
    `core.lang_lstm`, `core.attention` (`h2att`, `alpha_net`)."""
    _no_vocab_flag(vocab_path)
    opt, ix_to_word = _read_infos(infos_path, "sc_topdown", ("topdown", "updown"))
    where = f"--infos={infos_path} opt"
    _check_topdown_options(opt, where)
    fields = (
        "fc_feat_size",
        "att_feat_size",
        "input_encoding_size",
        "rnn_size",
        "att_hid_size",
    )
    model = {"name": "topdown", **sizes(opt, fields, where)}
    model["drop_prob_lm"] = float(option(opt, "drop_prob_lm", where, default=0.5))
    state_dict = fold_topdown_batchnorm(load_state_dict(model_path))
    return SourceModel(
        model=model,
        ix_to_word=ix_to_word,
        state_dict=state_dict,
        renames=_TOPDOWN_RENAMES,
        origin=_origin("sc_topdown", model_path, infos_path, opt),
    )
