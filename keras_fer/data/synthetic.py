"""A deterministic synthetic face dataset in which identity confounds expression.

Real FER data cannot be shipped, and a dataset on which identity-aware methods *should* win
is a useful controlled check, so this module draws aligned grayscale faces (``size`` x
``size`` uint8, 60 by default, the ``preprocess.ALIGNED_SIZE`` contract) from explicit
factors, vectorised in NumPy (about 1,500 faces per second on one core).

Identity factors (fixed per subject, drawn from ``seed``):
    face oval half-width and half-height, vertical face position, eye spacing, eye width and
    height, eye height asymmetry, brow gap and thickness, nose length and width, mouth
    position and width, skin, background, hair and lip tones, hairline height, a sinusoidal
    skin texture (amplitude, frequencies, phases) and an optional mole (position, size).

Expression factors (9, in :data:`EXPRESSION_FACTORS`): mouth curvature (corners up > 0),
mouth opening, eye openness, brow raise, brow angle (inner ends down > 0), cheek raise,
nose wrinkle, one-sided mouth curl and mouth width. Each class has a prototype vector
(:data:`PROTOTYPES`, neutral = 0), scaled per frame by an intensity in about [0.8, 1].
Rendering clips mouth opening to [0, 1.5] and eye openness to a visible range.

The confound: every subject has a resting offset added to all expression factors, so a
person's neutral face already smiles, frowns or squints a little. Offsets have standard
deviation ``0.6 * confound`` per factor, comparable to the differences between class
prototypes, so two people's neutral faces differ in expression factors about as much as, or
more than, one person's happy and sad faces. ``OFFSET_EXPLAINED`` of that standard deviation
is a fixed linear function of the visible identity factors (the same for every seed, a
"population rule"), the rest is idiosyncratic. The expression signal is therefore relative
to the person's own baseline: a model that knows (or infers from identity cues) the
baseline can remove it, one that looks at the image alone cannot. ``confound=0`` removes the
offsets.

Per image: a small pose jitter (shift up to 1.5 px, rotation up to 5 degrees, scale up to
4%), per-frame factor noise, an illumination gain/offset/gradient and Gaussian pixel noise,
all scaled by ``jitter`` (pixel noise by ``noise``), so that no two frames are identical.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from keras_fer.data.labels import CANONICAL, protocol_classes
from keras_fer.data.records import RecordTable

EXPRESSION_FACTORS: Tuple[str, ...] = (
    "mouth_curve",
    "mouth_open",
    "eye_open",
    "brow_raise",
    "brow_angle",
    "cheek",
    "nose_wrinkle",
    "mouth_curl",
    "mouth_width",
)

PROTOTYPES: Dict[str, Tuple[float, ...]] = {
    # curve, open, eye, raise, angle, cheek, wrinkle, curl, width
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "happiness": (1.0, 0.35, -0.35, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5),
    "surprise": (0.0, 1.0, 0.9, 1.0, -0.2, 0.0, 0.0, 0.0, -0.4),
    "sadness": (-0.8, 0.0, -0.35, 0.2, -0.9, 0.0, 0.0, 0.0, -0.1),
    "anger": (-0.3, 0.0, 0.2, -0.6, 1.0, 0.0, 0.3, 0.0, -0.5),
    "disgust": (-0.5, 0.25, -0.45, -0.4, 0.5, 0.5, 1.0, 0.0, 0.0),
    "fear": (-0.2, 0.5, 0.8, 0.6, -0.6, 0.0, 0.0, 0.0, 0.6),
    "contempt": (0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0),
}
"""Expression factor vector of each canonical class at full intensity."""

# name: (low, high) of the uniform prior, in pixels of a 60 x 60 face or gray levels.
IDENTITY_RANGES: Dict[str, Tuple[float, float]] = {
    "face_w": (17.0, 22.0),
    "face_h": (22.0, 25.5),
    "face_y": (-1.0, 1.0),
    "eye_sep": (8.0, 11.0),
    "eye_y": (-5.0, -2.0),
    "eye_w": (3.0, 4.2),
    "eye_h": (1.6, 2.4),
    "eye_tilt": (-0.6, 0.6),
    "brow_gap": (2.5, 4.0),
    "brow_thick": (0.8, 1.6),
    "nose_len": (7.0, 10.0),
    "nose_w": (1.5, 2.8),
    "mouth_gap": (5.0, 7.0),
    "mouth_w": (6.5, 9.5),
    "skin": (120.0, 205.0),
    "background": (25.0, 95.0),
    "hair": (15.0, 80.0),
    "hairline": (0.55, 0.85),
    "lip": (15.0, 45.0),
    "texture": (0.0, 8.0),
    "tex_fu": (0.3, 0.9),
    "tex_fv": (0.3, 0.9),
    "tex_pu": (0.0, 2 * np.pi),
    "tex_pv": (0.0, 2 * np.pi),
    "mole_u": (-12.0, 12.0),
    "mole_v": (-4.0, 12.0),
    "mole_r": (0.0, 1.4),
}

OFFSET_DRIVERS = (
    "face_w",
    "face_h",
    "eye_sep",
    "eye_w",
    "nose_len",
    "nose_w",
    "mouth_w",
    "skin",
    "hairline",
    "brow_thick",
)
"""Identity factors that drive the explained part of the resting offsets: the visible shape
and tone cues a model could learn to read a person's baseline from."""
OFFSET_STD = 0.6
OFFSET_EXPLAINED = 0.8
_POPULATION_SEED = 20240601
_CHUNK = 256


def _population_rule() -> np.ndarray:
    """The fixed (factors x drivers) matrix mapping standardised identity to offsets."""
    m = np.random.default_rng(_POPULATION_SEED).normal(
        size=(len(EXPRESSION_FACTORS), len(OFFSET_DRIVERS))
    )
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def sample_identities(
    n_subjects: int, seed: int = 0, confound: float = 1.0
) -> Dict[str, np.ndarray]:
    """Draws per-subject identity factors and resting expression offsets.

    Subject ``k`` has its own random stream, so ``syn000`` is the same person whatever
    ``n_subjects`` is.

    Returns:
        A dict of ``(n_subjects,)`` float arrays, one per :data:`IDENTITY_RANGES` key, plus
        ``"offset"``: ``(n_subjects, 9)`` resting offsets on :data:`EXPRESSION_FACTORS`.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be positive. Received: n_subjects={n_subjects}")
    low, high = np.array(list(IDENTITY_RANGES.values())).T
    uniforms, own = [], []
    for k in range(n_subjects):
        rng = np.random.default_rng([seed, 1, k])
        uniforms.append(rng.random(len(low) + 1))
        own.append(rng.normal(size=len(EXPRESSION_FACTORS)))
    uniforms, own = np.array(uniforms), np.array(own)
    values = low + (high - low) * uniforms[:, :-1]
    ident = {k: values[:, i] for i, k in enumerate(IDENTITY_RANGES)}
    # Half of the people have no mole.
    ident["mole_r"] = np.where(uniforms[:, -1] < 0.5, 0.0, ident["mole_r"] + 0.6)
    z = np.stack(
        [
            (ident[k] - np.mean(IDENTITY_RANGES[k])) / (np.ptp(IDENTITY_RANGES[k]) / np.sqrt(12))
            for k in OFFSET_DRIVERS
        ],
        axis=1,
    )
    explained = z @ _population_rule().T
    mix = OFFSET_EXPLAINED * explained + np.sqrt(1 - OFFSET_EXPLAINED**2) * own
    ident["offset"] = confound * OFFSET_STD * mix
    return ident


def _soft(d: np.ndarray) -> np.ndarray:
    """Coverage of a pixel from a signed distance (negative inside), ~1 px antialiasing."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _ellipse(u, v, cu, cv, a, b):
    return (np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2) - 1.0) * np.minimum(a, b)


def _segment(u, v, u0, v0, u1, v1):
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du**2 + dv**2 + 1e-9), 0.0, 1.0)
    return np.sqrt((u - u0 - t * du) ** 2 + (v - v0 - t * dv) ** 2)


def _paint(img, alpha, level):
    return img + alpha * (level - img)


def _render(p: Dict[str, np.ndarray], size: int) -> np.ndarray:
    """Renders a batch from per-image parameters (each a ``(B,)`` array) to float images."""
    q = {k: v.astype(np.float32)[:, None, None] for k, v in p.items()}
    grid = (np.arange(size, dtype=np.float32) + 0.5) * (60.0 / size) - 30.0
    x, y = grid[None, None, :], grid[None, :, None]
    # Face coordinates: undo the pose jitter, origin at the face centre.
    cos, sin = np.cos(q["rot"]), np.sin(q["rot"])
    xs, ys = x - q["dx"], y - q["dy"] - 1.0 - q["face_y"]
    u = (cos * xs + sin * ys) / q["scale"]
    v = (-sin * xs + cos * ys) / q["scale"]
    w, h, skin = q["face_w"], q["face_h"], q["skin"]

    img = q["background"] + 0.0 * u
    shade = 1.0 - 0.18 * (u / w) ** 2 - 0.06 * (v / h) ** 2
    texture = q["texture"] * np.sin(q["tex_fu"] * u + q["tex_pu"]) * np.sin(
        q["tex_fv"] * v + q["tex_pv"]
    )
    img = _paint(img, _soft(_ellipse(u, v, 0, 0, w, h)), skin * shade + texture)
    hairline = -h * q["hairline"] + 3.0 * (u / w) ** 2
    hair = np.maximum(_ellipse(u, v, 0, 0, w + 2.5, h + 3.0), v - hairline)
    img = _paint(img, _soft(hair), q["hair"])
    mole_r = q["mole_r"] + 1e-3
    img = _paint(img, _soft(_ellipse(u, v, q["mole_u"], q["mole_v"], mole_r, mole_r)), skin * 0.45)

    ey, es, ew = q["eye_y"], q["eye_sep"], q["eye_w"]
    ny, nw = ey + q["nose_len"], q["nose_w"]
    my = ny + q["mouth_gap"]
    cheek, wrinkle = q["cheek"], q["nose_wrinkle"]
    # Cheeks: raised and brighter blobs, and nasolabial folds deepening with the raise.
    for side in (-1.0, 1.0):
        r2 = (u - side * 0.5 * w) ** 2 + (v - (ny - 1.0 - 1.5 * cheek)) ** 2
        img = img + 14.0 * np.maximum(cheek, 0.0) * np.exp(-r2 / 18.0)
        fold = _segment(u, v, side * (nw + 2.0), ny - 1.0, side * (q["mouth_w"] + 1.5), my + 1.0)
        img = _paint(img, 0.5 * np.clip(cheek, 0.0, 1.2) * _soft(fold - 0.5), skin * 0.6)

    openness = np.clip(1.0 + 0.6 * q["eye_open"], 0.15, 2.0)
    brow_y = ey - q["eye_h"] - q["brow_gap"] - 3.0 * q["brow_raise"]
    for side in (-1.0, 1.0):
        cu, cv = side * es, ey + side * q["eye_tilt"]
        eh = q["eye_h"] * openness
        img = _paint(img, _soft(_ellipse(u, v, cu, cv, ew + 0.6, eh + 0.6)), skin * 0.35)
        sclera = _soft(_ellipse(u, v, cu, cv, ew, eh))
        img = _paint(img, sclera, np.minimum(skin + 40.0, 240.0))
        iris = _soft(_ellipse(u, v, cu, cv, 0.55 * ew, 0.55 * ew))
        img = _paint(img, sclera * iris, 30.0)
        inner = (side * (es - 0.6 * ew), brow_y + 2.2 * q["brow_angle"])
        outer = (side * (es + 1.3 * ew), brow_y - 0.4 * q["brow_angle"] + 0.5)
        brow = _segment(u, v, inner[0], inner[1], outer[0], outer[1]) - q["brow_thick"]
        img = _paint(img, _soft(brow), q["hair"] + 10.0)
        # Frown lines between the brows (anger, disgust).
        frown = _segment(u, v, side * 1.6, brow_y + 1.0, side * 1.2, brow_y + 4.5) - 0.3
        img = _paint(img, 0.6 * np.clip(q["brow_angle"], 0.0, 1.2) * _soft(frown), skin * 0.6)
        # Nose wrinkle at the bridge, and nostrils lifted and flared by it.
        crease = _segment(u, v, side * 1.0, ey + 2.5, side * 3.5, ey + 1.5) - 0.3
        img = _paint(img, 0.7 * np.clip(wrinkle, 0.0, 1.2) * _soft(crease), skin * 0.55)
        nostril = _ellipse(u, v, side * nw, ny - 1.2 * wrinkle, 1.4 + 0.5 * np.abs(wrinkle), 0.9)
        img = _paint(img, _soft(nostril), skin * 0.4)
    # Forehead lines with raised brows (surprise, fear).
    for k in (4.0, 7.5):
        line = np.abs(v - (brow_y - k) + 1.5 * (u / w) ** 2) - 0.35
        line = np.maximum(line, np.abs(u) - 0.45 * w)
        img = _paint(img, 0.6 * np.clip(q["brow_raise"], 0.0, 1.2) * _soft(line), skin * 0.65)
    ridge = _segment(u, v, nw * 0.6, ey + 1.0, nw * 0.9, ny - 1.5) - 0.4
    img = _paint(img, 0.35 * _soft(ridge), skin * 0.7)

    mw = q["mouth_w"] * (1.0 + 0.2 * q["mouth_width"])
    t = np.clip(u / mw, -1.0, 1.0)
    centre = my + 1.2 * q["mouth_curve"] - 3.2 * q["mouth_curve"] * t**2
    centre = centre - 2.8 * q["mouth_curl"] * np.maximum(t, 0.0) ** 2
    gap = 4.5 * np.clip(q["mouth_open"], 0.0, 1.5) * np.sqrt(1.0 - t**2)
    across = np.abs(u) - mw
    lips = np.maximum(
        np.maximum(v - (centre + 1.2 * gap + 2.2), centre - 0.8 * gap - 1.8 - v), across - 0.5
    )
    img = _paint(img, _soft(lips), skin - q["lip"])
    hole = np.maximum(
        np.maximum(v - (centre + 1.2 * gap + 0.55), centre - 0.8 * gap - 0.55 - v), across
    )
    img = _paint(img, _soft(hole), 25.0)

    img = img * q["gain"] + q["bias"] + q["gradient"] * x / 30.0
    return img


def make_synthetic_with_factors(
    n_subjects: int = 40,
    images_per_class: int = 3,
    classes: str | Sequence[str] = "ck8",
    seed: int = 0,
    size: int = 60,
    confound: float = 1.0,
    noise: float = 4.0,
    jitter: float = 1.0,
) -> Tuple[RecordTable, Dict[str, np.ndarray]]:
    """Like :func:`make_synthetic`, also returning the generating factors of every record.

    Returns:
        ``(table, factors)``: ``factors`` holds ``(N,)`` arrays of every identity factor,
        ``"expression"``: ``(N, 9)`` expression factors as rendered (resting offset +
        intensity x prototype + frame noise), ``"offset"``: ``(N, 9)`` the subject's resting
        offset, and the per-image pose/illumination jitter.
    """
    if n_subjects < 1 or images_per_class < 1:
        raise ValueError(
            f"n_subjects and images_per_class must be positive. Received: "
            f"n_subjects={n_subjects}, images_per_class={images_per_class}"
        )
    if size < 24:
        raise ValueError(f"size must be at least 24. Received: size={size}")
    if confound < 0 or noise < 0 or jitter < 0:
        raise ValueError(
            f"confound, noise and jitter must be >= 0. Received: confound={confound}, "
            f"noise={noise}, jitter={jitter}"
        )
    classes = protocol_classes(classes)
    ident = sample_identities(n_subjects, seed, confound)

    subj, cls, frame = np.meshgrid(
        np.arange(n_subjects),
        np.arange(len(classes)),
        np.arange(images_per_class),
        indexing="ij",
    )
    subj, cls, frame = subj.ravel(), cls.ravel(), frame.ravel()
    n = len(subj)
    rng = np.random.default_rng([seed, 2])
    prototypes = np.array([PROTOTYPES[c] for c in classes])[cls]
    # Successive frames approach the apex, as CK+'s last frames do.
    ramp = 0.8 + 0.2 * (frame + 1) / images_per_class
    intensity = ramp + 0.05 * jitter * rng.uniform(-1, 1, n)
    expression = (
        ident["offset"][subj]
        + intensity[:, None] * prototypes
        + 0.08 * jitter * rng.normal(size=prototypes.shape)
    )
    factors = {k: val[subj] for k, val in ident.items()}
    factors["expression"] = expression
    factors.update(
        dx=1.5 * jitter * rng.uniform(-1, 1, n),
        dy=1.5 * jitter * rng.uniform(-1, 1, n),
        rot=np.deg2rad(5.0) * jitter * rng.uniform(-1, 1, n),
        scale=1.0 + 0.04 * jitter * rng.uniform(-1, 1, n),
        gain=1.0 + 0.1 * jitter * rng.uniform(-1, 1, n),
        bias=8.0 * jitter * rng.uniform(-1, 1, n),
        gradient=10.0 * jitter * rng.uniform(-1, 1, n),
    )
    params = {k: v for k, v in factors.items() if k not in ("expression", "offset")}
    params.update({name: expression[:, i] for i, name in enumerate(EXPRESSION_FACTORS)})

    images = np.empty((n, size, size), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        part = {k: v[start : start + _CHUNK] for k, v in params.items()}
        img = _render(part, size)
        img = img + noise * rng.normal(size=img.shape)
        images[start : start + _CHUNK] = np.clip(np.round(img), 0, 255).astype(np.uint8)

    subjects = np.array([f"syn{s:03d}" for s in range(n_subjects)])[subj]
    names = np.array(classes)[cls]
    table = RecordTable(
        images=images,
        expression=np.array([CANONICAL.index(c) for c in classes])[cls],
        subject=subjects,
        sequence=np.char.add(np.char.add(subjects, "_"), np.char.zfill(cls.astype(str), 3)),
        frame_role=np.where(names == "neutral", "neutral", "peak"),
        path=[f"synthetic://{s}/{c}/{f}" for s, c, f in zip(subjects, names, frame)],
        name="synthetic",
    )
    return table, factors


def make_synthetic(
    n_subjects: int = 40,
    images_per_class: int = 3,
    classes: str | Sequence[str] = "ck8",
    seed: int = 0,
    size: int = 60,
    confound: float = 1.0,
    noise: float = 4.0,
    jitter: float = 1.0,
) -> RecordTable:
    """Generates a synthetic aligned-face dataset (see the module docstring for the factors).

    Args:
        n_subjects: number of identities (``syn000``, ``syn001``, ...).
        images_per_class: frames per subject and class (successive intensities).
        classes: a protocol name (``"ck8"``: CK+'s 7 classes and neutral) or class names.
        seed: the same seed gives byte-identical images.
        size: side of the square uint8 images.
        confound: scale of the subjects' resting expression offsets (0 removes them).
        noise: standard deviation of the Gaussian pixel noise, in gray levels.
        jitter: scale of the per-image pose, illumination and expression-factor jitter.

    Returns:
        A :class:`RecordTable` named ``"synthetic"``, subject-major, then class, then frame;
        ``frame_role`` is ``"neutral"`` for the neutral class and ``"peak"`` otherwise.
    """
    return make_synthetic_with_factors(
        n_subjects, images_per_class, classes, seed, size, confound, noise, jitter
    )[0]
