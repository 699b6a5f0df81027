"""Where each decoder's recurrent layers live in its params: one `Widening` per layer.

For every registered decoder, layer l (bottom first) is listed with its producers
(the arrays computing its units: every gate block of its input, recurrent and bias
arrays) and its consumers (every array reading its h, or its c: the recurrent
kernel, the next layer, the attention query, `logit`). Layers are those of
`models.layers.hidden_sizes`:

* fc, att2in2, in5400_rnn: one layer;
* showtell: `model.num_layers` stacked torch LSTMs;
* topdown/updown: 0 the attention LSTM, 1 the language LSTM (whose previous h is
  also the first input of the attention LSTM);
* in5400_gru, in5400_lstm: two stacked cells; in5400_att: 0 `lstm0` (its [h; c]
  also feeds the attention MLP), 1 `lstm1`.

Layouts: nnx Linear kernels are (in, out); torch LSTM weights (4H, in); IN5400
cells one (I + H, H) weight per gate over [x; h].
"""

from nic_jax.errors import InputError
from nic_jax.growth.transforms import Consumer, Producer, Widening


def _linear_producers(prefix: tuple, gates: int) -> list:
    return [
        Producer(prefix + ("kernel",), 1, gates),
        Producer(prefix + ("bias",), 0, gates),
    ]


def _fc(params, layer):
    width = params["core"]["h2h"]["kernel"].shape[0]
    producers = _linear_producers(("core", "i2h"), 5)
    producers += _linear_producers(("core", "h2h"), 5)
    consumers = [
        Consumer(("core", "h2h", "kernel"), 0),
        Consumer(("logit", "kernel"), 0),
    ]
    return width, producers, consumers


def _att2in2(params, layer):
    width = params["core"]["h2h"]["kernel"].shape[0]
    producers = _linear_producers(("core", "i2h"), 5)
    producers += _linear_producers(("core", "h2h"), 5)
    producers += _linear_producers(("core", "a2c"), 2)  # the two max-out chunks
    consumers = [
        Consumer(("core", "h2h", "kernel"), 0),
        Consumer(("core", "attention", "h2att", "kernel"), 0),
        Consumer(("logit", "kernel"), 0),
    ]
    return width, producers, consumers


def _torch_lstm_producers(prefix: tuple, cell: dict, suffix: str = "") -> list:
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [
        Producer(prefix + (name + suffix,), 0, 4)
        for name in names
        if name + suffix in cell
    ]


def _showtell(params, layer):
    core = params["core"]
    num_layers = sum(name.startswith("weight_hh_l") for name in core)
    width = core[f"weight_hh_l{layer}"].shape[1]
    producers = _torch_lstm_producers(("core",), core, f"_l{layer}")
    consumers = [Consumer(("core", f"weight_hh_l{layer}"), 1)]
    if layer + 1 < num_layers:
        consumers.append(Consumer(("core", f"weight_ih_l{layer + 1}"), 1))
    else:
        consumers.append(Consumer(("logit", "kernel"), 0))
    return width, producers, consumers


def _topdown(params, layer):
    core = params["core"]
    att, lang = ("core", "att_lstm"), ("core", "lang_lstm")
    if layer == 0:
        width = core["att_lstm"]["weight_hh"].shape[1]
        region_size = core["lang_lstm"]["weight_ih"].shape[1] - width
        consumers = [
            Consumer(att + ("weight_hh",), 1),
            Consumer(("core", "attention", "h2att", "kernel"), 0),
            Consumer(lang + ("weight_ih",), 1, region_size),  # [att, h_att]
        ]
        return width, _torch_lstm_producers(att, core["att_lstm"]), consumers
    width = core["lang_lstm"]["weight_hh"].shape[1]
    consumers = [
        Consumer(lang + ("weight_hh",), 1),
        Consumer(att + ("weight_ih",), 1),  # [prev h_lang, fc, word]
        Consumer(("logit", "kernel"), 0),
    ]
    return width, _torch_lstm_producers(lang, core["lang_lstm"]), consumers


def _weights(cell: dict) -> list:
    return sorted(name for name in cell if name.startswith("weight"))


def _cell(cell: dict, prefix: tuple):
    """An IN5400 cell's producers, and its weights as consumers of its own h (the
    rows after the I input rows of [x; h])."""
    width = cell["bias"].shape[-1]
    input_size = cell["weight"].shape[0] - width
    producers = [Producer(prefix + (name,), 1) for name in sorted(cell)]
    consumers = [Consumer(prefix + (w,), 0, input_size) for w in _weights(cell)]
    return width, producers, consumers


def _in5400_stack(params, layer):
    stack = params["rnn"]
    num_layers = len(stack)
    prefix = ("rnn", f"layer{layer}")
    width, producers, consumers = _cell(stack[f"layer{layer}"], prefix)
    if layer + 1 < num_layers:
        above = f"layer{layer + 1}"
        consumers += [Consumer(("rnn", above, w), 0) for w in _weights(stack[above])]
    else:
        consumers.append(Consumer(("output_layer", "kernel"), 0))
    return width, producers, consumers


def _in5400_att(params, layer):
    name = ("lstm0", "lstm1")[layer]
    prefix = (name, "layer0")
    width, producers, consumers = _cell(params[name]["layer0"], prefix)
    if layer == 0:
        consumers += [
            Consumer(("att_hidden", "kernel"), 0, 0),  # h of [h; c]
            Consumer(("att_hidden", "kernel"), 0, width),  # c of [h; c]
        ]
        consumers += [  # lstm1 reads [h0; attended]
            Consumer(("lstm1", "layer0", w), 0)
            for w in _weights(params["lstm1"]["layer0"])
        ]
    else:
        consumers.append(Consumer(("output_layer", "kernel"), 0))
    return width, producers, consumers


def _showtell_layers(params) -> int:
    return sum(name.startswith("weight_hh_l") for name in params["core"])


# name -> (spec_fn(params, layer) -> (width, producers, consumers), layer count)
FAMILIES = {
    "fc": (_fc, lambda params: 1),
    "att2in2": (_att2in2, lambda params: 1),
    "showtell": (_showtell, _showtell_layers),
    "topdown": (_topdown, lambda params: 2),
    "updown": (_topdown, lambda params: 2),
    "in5400_rnn": (_in5400_stack, lambda params: len(params["rnn"])),
    "in5400_gru": (_in5400_stack, lambda params: len(params["rnn"])),
    "in5400_lstm": (_in5400_stack, lambda params: len(params["rnn"])),
    "in5400_att": (_in5400_att, lambda params: 2),
}


def _family(name: str):
    if name not in FAMILIES:
        raise InputError(
            f"model.name={name!r} has no widening; valid: {sorted(FAMILIES)}"
        )
    return FAMILIES[name]


def num_layers(params: dict, model_name: str) -> int:
    """How many recurrent layers the decoder has (bottom = 0, top = L - 1)."""
    return _family(model_name)[1](params)


def layer_widths(params: dict, model_name: str) -> tuple[int, ...]:
    """The current width H_l of every layer, read from the params' shapes."""
    spec_fn = _family(model_name)[0]
    count = num_layers(params, model_name)
    return tuple(spec_fn(params, layer)[0] for layer in range(count))


def layer_widening(params: dict, model_name: str, layer: int, extra: int) -> Widening:
    """The `Widening` that adds `extra` units to `layer` of this decoder."""
    count = num_layers(params, model_name)
    if not 0 <= layer < count:
        raise InputError(
            f"--layer={layer}: model {model_name!r} has layers 0..{count - 1} "
            "(0 = bottom)"
        )
    width, producers, consumers = _family(model_name)[0](params, layer)
    return Widening(width, extra, tuple(producers), tuple(consumers))
