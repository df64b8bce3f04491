"""Adversarial and reconstruction losses shared by the project's conditional GANs.

All functions take discriminator *logits* (any shape, e.g. PatchGAN maps ``(B, h, w, 1)``)
and return a scalar mean. ``mode`` picks the objective:

- ``"bce"``: the cGAN objective of Isola et al. (pix2pix), written with ``softplus`` so it
  is stable for large logits: ``-log sigmoid(z) = softplus(-z)`` and
  ``-log(1 - sigmoid(z)) = softplus(z)``. The generator uses the non-saturating form
  (maximise ``log D(G(x))``).
- ``"lsgan"``: least squares (Mao et al. 2017), targets 1 for real and 0 for fake.
"""

from __future__ import annotations

from keras import ops

MODES = ("bce", "lsgan")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(
            f"Unknown adversarial mode. Expected one of {MODES}. Received: mode={mode!r}"
        )


def generator_adversarial_loss(fake_logits, mode: str = "bce"):
    """Generator loss: push ``D`` to call generated samples real.

    Args:
        fake_logits: discriminator logits on (condition, generated) pairs.
        mode: ``"bce"`` or ``"lsgan"``.

    Returns:
        Scalar mean loss.
    """
    _check_mode(mode)
    if mode == "bce":
        return ops.mean(ops.softplus(-fake_logits))
    return ops.mean(ops.square(fake_logits - 1.0))


def discriminator_loss(real_logits, fake_logits, mode: str = "bce"):
    """Discriminator loss: real pairs to 1, generated pairs to 0 (sum of the two means).

    The two terms are summed, as in the cGAN objective (the paper's Eq. 2), not halved.

    Args:
        real_logits: discriminator logits on (condition, real target) pairs.
        fake_logits: discriminator logits on (condition, generated) pairs.
        mode: ``"bce"`` or ``"lsgan"``.

    Returns:
        Scalar loss.
    """
    _check_mode(mode)
    if mode == "bce":
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))
    return ops.mean(ops.square(real_logits - 1.0)) + ops.mean(ops.square(fake_logits))


def l1_loss(a, b):
    """Mean absolute difference ``E[|a - b|]`` over all elements (the paper's Eq. 3)."""
    return ops.mean(ops.abs(a - b))
