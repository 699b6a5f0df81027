"""Optimizer and schedules with the self-critical.pytorch semantics, as optax.

Learning rate: lr * rate ** ((epoch - start) // every) once epoch > start (start >= 0).
Gradients are clipped element-wise to +-grad_clip_value before Adam (torch's
`clamp_` in `utils.clip_gradient`); weight decay is Adam's L2 term, as torch.optim.Adam.
Scheduled sampling: ss_prob = min(increase * ((epoch - start) // every), max).
"""

import jax.numpy as jnp
import optax

from nic_jax.errors import InputError


def lr_schedule(optim_config, steps_per_epoch: int) -> optax.Schedule:
    """Step -> learning rate, decayed by whole epochs."""
    base = optim_config.learning_rate
    start = optim_config.lr_decay_start_epoch
    every = optim_config.lr_decay_every_epochs
    rate = optim_config.lr_decay_rate

    def schedule(step):
        epoch = step // steps_per_epoch
        decays = jnp.where(epoch > start, (epoch - start) // every, 0)
        return base * rate ** jnp.where(start >= 0, decays, 0)

    return schedule


def make_optimizer(optim_config, steps_per_epoch: int) -> optax.GradientTransformation:
    """clip(value) -> [L2] -> Adam -> -lr(step)."""
    if optim_config.name != "adam":
        raise InputError(
            f"config optim.name={optim_config.name!r} is unknown; valid: adam"
        )
    parts = []
    if optim_config.grad_clip_value > 0:
        parts.append(optax.clip(optim_config.grad_clip_value))
    if optim_config.weight_decay > 0:
        parts.append(optax.add_decayed_weights(optim_config.weight_decay))
    parts += [
        optax.scale_by_adam(optim_config.b1, optim_config.b2, optim_config.eps),
        optax.scale_by_learning_rate(lr_schedule(optim_config, steps_per_epoch)),
    ]
    return optax.chain(*parts)


def scheduled_sampling_prob(xe_config, epoch: int) -> float:
    """Probability of feeding back a model sample instead of the ground truth."""
    start = xe_config.ss_start_epoch
    if start < 0 or epoch <= start:
        return 0.0
    steps = (epoch - start) // xe_config.ss_increase_every_epochs
    return min(xe_config.ss_increase_prob * steps, xe_config.ss_max_prob)
