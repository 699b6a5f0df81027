"""Dotted config fields ("section.name") that a config may or may not have:
which it has, and a copy with them scaled (step sizes after a rollback or a
widening)."""

from collections.abc import Iterable


def present(config, fields: Iterable[str]) -> list[str]:
    """The dotted `fields` that `config` holds, in order."""
    found = []
    for dotted in fields:
        section, name = dotted.split(".")
        if section in config and name in config[section]:
            found.append(dotted)
    return found


def scaled(config, fields: Iterable[str], factor: float):
    """A resolved copy of `config` with each of `fields` it holds times `factor`."""
    config = config.copy_and_resolve_references()
    for dotted in present(config, fields):
        section, name = dotted.split(".")
        config[section][name] = config[section][name] * factor
    return config


def value(config, dotted: str):
    """The value of one dotted field."""
    section, name = dotted.split(".")
    return config[section][name]
