"""Registry of decoder classes by config name (`config.model.name`)."""

from nic_jax.errors import InputError
from nic_jax.models.att2in import Att2in2Model
from nic_jax.models.fc import FCModel
from nic_jax.models.in5400 import IN5400GRU, IN5400LSTM, IN5400RNN, IN5400Attention
from nic_jax.models.showtell import ShowTellModel
from nic_jax.models.topdown import TopDownModel

MODELS = {
    "fc": FCModel,
    "showtell": ShowTellModel,
    "att2in2": Att2in2Model,
    "topdown": TopDownModel,
    "updown": TopDownModel,  # the paper's name for TopDown
    "in5400_rnn": IN5400RNN,
    "in5400_gru": IN5400GRU,
    "in5400_lstm": IN5400LSTM,
    "in5400_att": IN5400Attention,
}


def get_model_class(name: str):
    """Returns the NNX decoder class registered as `name`."""
    if name not in MODELS:
        raise InputError(
            f"config model.name={name!r} is unknown; valid: {sorted(MODELS)}"
        )
    return MODELS[name]
