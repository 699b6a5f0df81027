"""Dotted config fields: which a config holds, and a scaled copy."""

from ml_collections import ConfigDict

from nic_jax import config_fields

FIELDS = ("optim.learning_rate", "es.learning_rate", "es.sigma")


def _config():
    return ConfigDict({"optim": {"learning_rate": 0.5}, "es": {"sigma": 0.02}})


def test_present_lists_the_fields_the_config_holds_in_order():
    assert config_fields.present(_config(), FIELDS) == [
        "optim.learning_rate",
        "es.sigma",
    ]


def test_scaled_multiplies_those_fields_in_a_copy():
    config = _config()
    got = config_fields.scaled(config, FIELDS, 0.25)
    assert got.optim.learning_rate == 0.125 and got.es.sigma == 0.005
    assert "learning_rate" not in got.es
    assert config.optim.learning_rate == 0.5  # the original is untouched
    assert config_fields.value(got, "es.sigma") == 0.005
