"""IDFERM's neutral-face generator (HNG) pretrained once as a face autoencoder on many people.

Per fold the HNG learns from ~900 CK+ faces of ~100 people, and its 256-d bottleneck does
not carry identity to the people it never saw: measured (session 10, folds 0-4, the
face network's perceptual features, identity weight 10), its faces keep the input's identity
in 34.5% where the real neutral frames pass in 91.8%. The face network it is scored with
knows identity from ~7,500 people; this gives the generator a start from many people too.
:func:`pretrain_generator` trains the HNG's encoder + decoder to *reconstruct* faces (each face
is its own target, so every loss of the HNG applies unchanged: perceptual, identity, pixel,
symmetry, adversarial) on faces with no labels at all: FER+ Train's 28,385, never CK+ or ORL
(the fold's test subjects and the benchmark's held-out identities). IDFERM's ``extra
hng_init`` then starts each fold's HNG from the saved generator (:func:`load_generator`), and
the fold's stage trains it to map expressive faces to neutral ones as before.

    python tools/pretrain_hng.py --out=pretrained/hng_ferplus_generator.keras
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np

from keras_fer.models import idferm
from keras_fer.models.hng_step import HNGModel
from keras_fer.training.idferm_batches import to_unit
from keras_fer.training.settings import ConfigError
from keras_fer.training.stages import fit_stage


class SelfPairs(keras.utils.PyDataset):
    """Batches ``(faces, the same faces)`` in ``[0, 1]``, flipped together half the time.

    Args:
        faces: uint8 ``(N, S, S)`` faces at the generator's size.
        batch_size: faces per batch.
        seed: seed of the order and the flips (redrawn every epoch).
        **kwargs: ``PyDataset`` arguments.
    """

    def __init__(self, faces: np.ndarray, batch_size: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if len(faces) == 0:
            raise ValueError("SelfPairs needs at least one face. Received 0.")
        self.faces = np.asarray(faces)
        self.batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        self._order = self._rng.permutation(len(self.faces))
        self._flip = self._rng.random(len(self.faces)) < 0.5

    def __len__(self) -> int:
        return math.ceil(len(self.faces) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.faces[rows].copy()
        flip = self._flip[rows]
        x[flip] = x[flip, :, ::-1]
        x = to_unit(x)
        return x, x


def make_hng(config: idferm.HNGConfig, perceptual: keras.Model, identity: keras.Model,
             weights: dict, lr: float = 2e-4) -> HNGModel:
    """An HNG of ``config`` with the frozen feature models of its losses and its loss
    ``weights``, compiled with one Adam (beta_1 0.5) per part (paper, Algorithm 1); how both
    a fold's HNG stage and :func:`pretrain_generator` build theirs."""
    hng = HNGModel(idferm.build_hng_encoder(config), idferm.build_hng_decoder(config),
                   idferm.build_hng_discriminator(config), perceptual, identity,
                   residual=config.residual, **weights)
    hng.compile(*[keras.optimizers.Adam(lr, beta_1=0.5) for _ in range(3)])
    return hng


def fit_hng(hng: HNGModel, stage_dir: str | Path, pairs: keras.utils.PyDataset, epochs: int,
            callbacks=()) -> None:
    """``stages.fit_stage`` for the HNG wrapper, which must be built before weights can be
    restored (resume, BackupAndRestore)."""
    hng.build((None,) + tuple(hng.encoder.input_shape[1:]))
    fit_stage(hng, stage_dir, pairs, epochs, callbacks=list(callbacks))


def pretrain_generator(faces: np.ndarray, config: idferm.HNGConfig, perceptual: keras.Model,
                       identity: keras.Model, weights: dict, stage_dir: str | Path,
                       epochs: int, lr: float = 2e-4, batch_size: int = 64,
                       seed: int = 0) -> keras.Model:
    """Trains an HNG of ``config`` to reconstruct ``faces``; returns its generator.

    Args:
        faces: uint8 ``(N, S, S)`` faces, ``S`` = ``config.image_size``.
        config: The HNG's architecture (the folds' ``extra hng`` must build the same).
        perceptual, identity: The frozen feature models of the HNG's losses.
        weights: ``HNGModel`` loss weights (``extra hng_weights``).
        stage_dir: Checkpoints and ``final.weights.h5`` (a finished stage is not retrained).
        epochs, lr, batch_size, seed: As the folds' HNG stage (Adam, beta_1 0.5).
    """
    if config.residual:
        raise ConfigError("pretrain_hng: a residual HNG (--hng='{\"residual\": true}') "
                          "reconstructs a face by changing nothing, so it learns nothing here; "
                          "pretrain the whole-face HNG, or train the residual one from scratch "
                          "(no hng_init)")
    hng = make_hng(config, perceptual, identity, weights, lr)
    fit_hng(hng, stage_dir, SelfPairs(faces, batch_size, seed), epochs)
    return hng.generator


def load_generator(hng: HNGModel, path: str | Path) -> str:
    """Copies the encoder and decoder weights of the generator saved at ``path`` into ``hng``.

    Returns:
        A log line saying what was copied.

    Raises:
        FileNotFoundError: No file at ``path``.
        ConfigError: The saved generator's architecture differs from ``hng``'s, or the file
            holds no HNG generator (a user's setting: the trainers print it on one line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hng_init: no generator at {path}; make one with "
                                "tools/pretrain_hng.py")
    not_hng = "not an HNG generator saved by tools/pretrain_hng.py"
    try:
        source = keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, TypeError) as err:
        raise ConfigError(f"hng_init: {path} is no Keras model file ({not_hng}): "
                          f"{str(err).splitlines()[0][:120]}") from None
    names = {layer.name for layer in getattr(source, "layers", [])}
    missing = [part.name for part in (hng.encoder, hng.decoder) if part.name not in names]
    if missing:
        raise ConfigError(f"hng_init: {path} has no {missing[0]!r} ({not_hng})")
    saved_residual = any(isinstance(layer, idferm.ResidualImage) for layer in source.layers)
    if saved_residual != hng.residual:
        raise ConfigError(f"hng_init: {path} holds a generator with residual="
                          f"{str(saved_residual).lower()} where this fold's HNG (extra 'hng') has "
                          f"residual={str(hng.residual).lower()}: give both the same")
    for part in (hng.encoder, hng.decoder):
        src = source.get_layer(part.name)
        got = [w.shape for w in src.get_weights()]
        want = [tuple(v.shape) for v in part.weights]
        if [tuple(s) for s in got] != want:
            record = Path(f"{path}.json")
            made = ""
            if record.is_file():
                settings = json.loads(record.read_text()).get("hng", {})
                made = f" (it was pretrained with --hng={json.dumps(settings)})"
            raise ConfigError(f"hng_init: the {part.name} in {path} has weights of shapes "
                              f"{got[:3]}... where this fold's HNG (extra 'hng') has "
                              f"{want[:3]}...{made}: give the fold the same extra 'hng' or "
                              "pretrain with the fold's")
        part.set_weights(src.get_weights())
    return (f"HNG encoder and decoder initialised from {path} "
            f"({sum(int(np.prod(v.shape)) for v in hng.generator.weights)} weights)")


__all__ = ["SelfPairs", "fit_hng", "load_generator", "make_hng", "pretrain_generator"]
