"""Parses the `:arg` suffix of `--config=configs/<name>.py:arg` (big_vision style).

`configs/default.py:tiny` or `configs/default.py:variant=tiny,seed=3` both work: bare
words switch boolean presets on, `key=value` pairs set typed values.
"""

from ml_collections import ConfigDict

from nic_jax.errors import InputError


def parse_arg(arg: str | None, **defaults) -> ConfigDict:
    """Returns `defaults` updated from a comma-separated `arg` string.

    Values are converted to the type of the default; unknown keys raise, naming the
    valid ones, so a typo in a preset never passes silently.
    """
    result = ConfigDict(dict(defaults))
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise InputError(
                f"config argument {key!r} is unknown; valid: {sorted(defaults)}"
            )
        result[key] = _convert(value.strip(), defaults[key], key) if sep else True
    return result


def _convert(value: str, default, key: str):
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InputError(f"config argument {key}={value!r}: expected true/false")
        return value.lower() in ("true", "1")
    try:
        return type(default)(value)
    except ValueError as error:
        raise InputError(
            f"config argument {key}={value!r}: expected {type(default).__name__}"
        ) from error


def sibling_config(config_file: str, name: str, arg: str | None = None) -> ConfigDict:
    """`get_config(arg)` of the config file `name` beside `config_file` (configs
    derive from one another wherever the configs directory lives)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(config_file).with_name(name)
    spec = importlib.util.spec_from_file_location(f"_nic_configs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
