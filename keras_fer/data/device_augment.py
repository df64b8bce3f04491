"""Training augmentation that runs on the accelerator, inside the compiled train step.

The GPU host has a few CPU cores shared by several trainer processes: per-image NumPy
augmentation on the host would starve the GPU. These functions take a whole batch of
aligned faces as a backend tensor and use ``keras.ops`` / ``keras.random`` only, so they run
inside the jitted step on JAX and TensorFlow alike, seeded by a ``keras.random.SeedGenerator``.

- :func:`random_geometry`: per-image random crop (as a shift of up to ``max_shift`` pixels
  of the centred window), horizontal flip and rotation, in one affine resampling; with no
  rotation the shifts are whole pixels and the crop is exact.
- :func:`mix`: mixup (the whole image, weight ``lam``) or cutmix (a box from the partner):
  one per-pixel weight map per image, and the targets mixed with its mean, so targets always
  mix in the same proportion as pixels. The partner of image ``i`` is image ``B-1-i`` of the
  (already shuffled) batch.
- :func:`random_erasing`: one random rectangle per chosen image filled with uniform noise.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _uniform(b, seed, low=0.0, high=1.0):
    return keras.random.uniform((b,), low, high, seed=seed)


def random_geometry(faces, seed, *, crop: int, max_shift: int, flip: bool = True,
                    rotation_degrees: float = 0.0):
    """Random shift-crop, flip and rotation of float ``(B, S, S, C)`` faces.

    Returns:
        ``(B, crop, crop, C)``: the centred ``crop`` window of the transformed face.
    """
    b, side = ops.shape(faces)[0], faces.shape[1]
    shift_x = ops.floor(_uniform(b, seed) * (2 * max_shift + 1)) - max_shift
    shift_y = ops.floor(_uniform(b, seed) * (2 * max_shift + 1)) - max_shift
    sign = ops.where(_uniform(b, seed) < 0.5, -1.0, 1.0) if flip else ops.ones((b,))
    if rotation_degrees > 0:
        angle = _uniform(b, seed, -rotation_degrees, rotation_degrees) * (math.pi / 180.0)
        cos, sin = ops.cos(angle), ops.sin(angle)
    else:
        cos, sin = ops.ones((b,)), ops.zeros((b,))
    # Output pixel p samples input M (p - c) + c + t, M = rotation @ diag(sign, 1).
    c = (side - 1) / 2.0
    a0, a1, b0, b1 = cos * sign, -sin, sin * sign, cos
    a2 = c + shift_x - (a0 + a1) * c
    b2 = c + shift_y - (b0 + b1) * c
    zero = ops.zeros((b,))
    transform = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
    out = ops.image.affine_transform(faces, transform, interpolation="bilinear",
                                     fill_mode="reflect")
    top = (side - crop) // 2
    return out[:, top:top + crop, top:top + crop, :]


def box_mask(height: int, width: int, top, bottom, left, right):
    """``(B, H, W, 1)`` float mask, 1 inside rows ``[top, bottom)`` x columns ``[left, right)``."""
    rows = ops.arange(height, dtype="float32")[None, :, None]
    cols = ops.arange(width, dtype="float32")[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < bottom[:, None, None])
              & (cols >= left[:, None, None]) & (cols < right[:, None, None]))
    return ops.cast(inside, "float32")[..., None]


def cutmix_box(height: int, width: int, lam, centre_y, centre_x):
    """Cutmix box of area about ``(1 - lam) * H * W`` centred at the given fractions,
    clipped to the image: ``(top, bottom, left, right)`` whole pixels."""
    cut = ops.sqrt(1.0 - lam)
    cy, cx = centre_y * height, centre_x * width
    half_h, half_w = cut * height / 2.0, cut * width / 2.0
    top = ops.floor(ops.clip(cy - half_h, 0, height))
    bottom = ops.floor(ops.clip(cy + half_h, 0, height))
    left = ops.floor(ops.clip(cx - half_w, 0, width))
    right = ops.floor(ops.clip(cx + half_w, 0, width))
    return top, bottom, left, right


def mix(x, targets, weight):
    """Mixes each image with its partner (image ``B-1-i``) by a per-pixel weight map.

    Args:
        x: ``(B, H, W, C)`` images.
        targets: ``(B, K)`` target distributions.
        weight: ``(B, H, W, 1)`` share of the image itself at each pixel (mixup: a constant
            ``lam``; cutmix: 0 inside the box, 1 outside).

    Returns:
        ``(mixed_x, mixed_targets)``, the targets mixed by the mean of ``weight``.
    """
    weight = ops.cast(weight, x.dtype)
    mixed = weight * x + (1.0 - weight) * ops.flip(x, axis=0)
    lam = ops.mean(weight, axis=(1, 2, 3))[:, None]
    return mixed, lam * targets + (1.0 - lam) * ops.flip(targets, axis=0)


def random_mix(x, targets, seed, *, mixup_alpha: float, cutmix_alpha: float, prob: float):
    """Mixup and/or cutmix on a random share ``prob`` of the images (others unchanged).

    With both alphas above 0, each chosen image gets one of the two at even odds; ``lam`` is
    drawn per image from ``Beta(alpha, alpha)``.
    """
    if prob <= 0 or (mixup_alpha <= 0 and cutmix_alpha <= 0):
        return x, targets
    b, height, width = ops.shape(x)[0], x.shape[1], x.shape[2]
    chosen = ops.cast(_uniform(b, seed) < prob, "float32")
    weights = []
    if mixup_alpha > 0:
        lam = keras.random.beta((b,), mixup_alpha, mixup_alpha, seed=seed)
        weights.append(ops.broadcast_to(lam[:, None, None, None], (b, height, width, 1)))
    if cutmix_alpha > 0:
        lam = keras.random.beta((b,), cutmix_alpha, cutmix_alpha, seed=seed)
        box = cutmix_box(height, width, lam, _uniform(b, seed), _uniform(b, seed))
        weights.append(1.0 - box_mask(height, width, *box))
    weight = weights[0]
    if len(weights) == 2:
        weight = ops.where((_uniform(b, seed) < 0.5)[:, None, None, None], *weights)
    chosen = chosen[:, None, None, None]
    return mix(x, targets, chosen * weight + (1.0 - chosen))


def random_erasing(x, seed, *, prob: float, area=(0.02, 0.33), ratio=(0.3, 3.3)):
    """Random erasing: with probability ``prob`` per image, one rectangle of ``area`` (share
    of the image) and aspect ``ratio`` (height / width, log-uniform) becomes uniform noise."""
    if prob <= 0:
        return x
    b, height, width = ops.shape(x)[0], x.shape[1], x.shape[2]
    share = _uniform(b, seed, *area)
    aspect = ops.exp(_uniform(b, seed, math.log(ratio[0]), math.log(ratio[1])))
    h = ops.clip(ops.round(ops.sqrt(share * aspect) * height), 1, height)
    w = ops.clip(ops.round(ops.sqrt(share / aspect) * width), 1, width)
    top = ops.floor(_uniform(b, seed) * (height - h + 1))
    left = ops.floor(_uniform(b, seed) * (width - w + 1))
    chosen = ops.cast(_uniform(b, seed) < prob, "float32")[:, None, None, None]
    mask = box_mask(height, width, top, top + h, left, left + w) * chosen
    noise = keras.random.uniform(ops.shape(x), seed=seed, dtype=x.dtype)
    return mask * noise + (1.0 - mask) * x
