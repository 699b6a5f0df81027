"""self-critical.pytorch schedules: lr decay by epochs, clipping, scheduled sampling."""

import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from configs.default import get_config
from nic_jax.train.optim import lr_schedule, make_optimizer, scheduled_sampling_prob


def test_lr_decays_by_0_8_every_3_epochs():
    optim = get_config().optim
    schedule = lr_schedule(optim, steps_per_epoch=10)
    got = [float(schedule(epoch * 10 + 5)) for epoch in range(10)]
    expected = [5e-4 * 0.8 ** (epoch // 3) for epoch in range(10)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_no_decay_when_start_is_negative():
    optim = get_config().optim.copy_and_resolve_references()
    optim.lr_decay_start_epoch = -1
    schedule = lr_schedule(optim, steps_per_epoch=10)
    assert float(schedule(1000)) == float(np.float32(5e-4))


def test_gradients_are_clipped_elementwise_before_adam():
    optim = get_config().optim
    tx = make_optimizer(optim, steps_per_epoch=10)
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([5.0, -0.05, 0.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    reference = optax.adam(5e-4).update(
        {"w": jnp.array([0.1, -0.05, 0.0])}, optax.adam(5e-4).init(params), params
    )[0]
    np.testing.assert_allclose(updates["w"], reference["w"], rtol=1e-6)


def test_scheduled_sampling_ramp():
    xe = ConfigDict(
        dict(
            ss_start_epoch=0,
            ss_increase_every_epochs=5,
            ss_increase_prob=0.05,
            ss_max_prob=0.25,
        )
    )
    got = [scheduled_sampling_prob(xe, e) for e in (0, 4, 5, 10, 30, 100)]
    np.testing.assert_allclose(got, [0, 0, 0.05, 0.1, 0.25, 0.25])
    xe.ss_start_epoch = -1
    assert scheduled_sampling_prob(xe, 50) == 0.0
