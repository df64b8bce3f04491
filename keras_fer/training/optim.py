"""SGD with momentum, decoupled weight decay and the papers' step schedule (/10 at 50%, 75%).

Weight decay uses Keras 3's optimizer ``weight_decay`` (decoupled: after each update,
``w -= lr * weight_decay * w`` on every trainable variable) instead of L2 kernel
regularisers, so the models carry no regularisation losses and the same decay applies on
every backend. It differs from PyTorch-style coupled L2 only in that the decay term does
not pass through the momentum buffer.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def step_schedule(
    learning_rate: float,
    total_steps: int,
    boundaries: Sequence[float] = (0.5, 0.75),
    factor: float = 0.1,
) -> keras.optimizers.schedules.PiecewiseConstantDecay:
    """Learning rate multiplied by ``factor`` at each fraction of ``total_steps``.

    The optimizer asks the schedule for the rate of update ``i`` (from 0) with
    ``iterations == i``; the boundary for fraction ``f`` is ``int(f * total_steps) - 1``, so
    update number ``int(f * total_steps)`` (the first of the second half, for f = 0.5) is the
    first one at the lower rate.

    Args:
        learning_rate: Initial rate.
        total_steps: Number of optimizer updates in the whole run (epochs * steps_per_epoch).
        boundaries: Increasing fractions of training in (0, 1).
        factor: Multiplier applied at each boundary.

    Returns:
        A ``PiecewiseConstantDecay`` schedule.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1. Received: total_steps={total_steps}")
    fractions = list(boundaries)
    if any(not 0.0 < f < 1.0 for f in fractions) or fractions != sorted(set(fractions)):
        raise ValueError(
            f"boundaries must be strictly increasing fractions in (0, 1). "
            f"Received: boundaries={boundaries}"
        )
    steps = [max(0, int(f * total_steps) - 1) for f in fractions]
    values = [learning_rate * factor**i for i in range(len(steps) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(steps, values)


def make_sgd(
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    boundaries: Sequence[float] = (0.5, 0.75),
    global_clipnorm: float | None = None,
) -> keras.optimizers.SGD:
    """SGD(momentum) with decoupled weight decay and lr /10 at 50% and 75% of training.

    Args:
        lr: Initial learning rate (IDEnNet: 0.1 pretraining, 0.01 fine-tuning).
        epochs: Training epochs.
        steps_per_epoch: Optimizer updates per epoch.
        momentum: SGD momentum.
        weight_decay: Decoupled weight decay coefficient (0 or None disables it).
        boundaries: Fractions of training where the rate drops by 10x.
        global_clipnorm: Clip the global norm of the gradients to this (None: no clipping).

    Returns:
        A ``keras.optimizers.SGD``.
    """
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(
            "epochs and steps_per_epoch must be >= 1. "
            f"Received: epochs={epochs}, steps_per_epoch={steps_per_epoch}"
        )
    schedule = step_schedule(lr, epochs * steps_per_epoch, boundaries)
    return keras.optimizers.SGD(
        learning_rate=schedule, momentum=momentum, weight_decay=weight_decay or None,
        global_clipnorm=global_clipnorm,
    )


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one epoch of ``n`` examples (the last one partial); at least 1."""
    return max(1, -(-int(n) // int(batch_size)))


def config_sgd(config, lr: float, epochs: int, n: int | None = None, steps: int | None = None,
               global_clipnorm: float | None = None) -> keras.optimizers.SGD:
    """:func:`make_sgd` for a run: ``epochs`` of ``steps`` batches (or of ``n`` examples at
    ``config.batch_size``), weight decay ``extra weight_decay`` (default 1e-4)."""
    if steps is None:
        steps = steps_per_epoch(n, config.batch_size)
    return make_sgd(lr, max(epochs, 1), max(steps, 1),
                    weight_decay=config.extra.get("weight_decay", 1e-4),
                    global_clipnorm=global_clipnorm)
