"""dlib's face ResNet in Keras: parity with dlib itself on real faces, cache, JAX, input helper.

The oracle is ``dlib.face_recognition_model_v1(path).compute_face_descriptor(chip)`` on the
same 150x150 uint8 chips (``dlib-bin``, a test-only requirement). The faces are 20 CK+48
faces, 20 ORL faces (one per subject) and 20 FER+ Test faces (tiles of the mosaic). The
JAX check runs in a subprocess (``KERAS_BACKEND=jax``): the backend is fixed per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from jax_subprocess import jax_env
from keras_fer.models import face_identity
from keras_fer.models.face_identity import dlib_resnet, to_face_input

FACES_PER_DATASET = 20
FERPLUS_TILE = 48
FERPLUS_TILES_PER_ROW = 128
MIN_COSINE = 0.9999
# Parameters of the 29 convolutions, 29 affine layers (frozen) and the 256 -> 128 fc.
TOTAL_PARAMS = 5_614_592


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _load_gray(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def chips(ckplus48_dir, orl_dir, ferplus_dir) -> dict[str, np.ndarray]:
    """150x150x3 float32 chips (integer values) per dataset, from our own gray faces."""
    ck_files = sorted(ckplus48_dir.glob("*/*.png"))
    step = max(1, len(ck_files) // FACES_PER_DATASET)
    ck = [_load_gray(p) for p in ck_files[::step][:FACES_PER_DATASET]]
    orl = [_load_gray(orl_dir / f"s{k}" / "1.pgm") for k in range(1, FACES_PER_DATASET + 1)]
    mosaic = _load_gray(ferplus_dir / "FER2013Test" / "faces.png")
    fer = []
    for i in range(0, 50 * FACES_PER_DATASET, 50):  # tile i is row i of label.csv
        row, col = divmod(i, FERPLUS_TILES_PER_ROW)
        top, left = row * FERPLUS_TILE, col * FERPLUS_TILE
        fer.append(mosaic[top : top + FERPLUS_TILE, left : left + FERPLUS_TILE])
    out = {
        "ckplus48": to_face_input(np.stack(ck)),
        "orl": to_face_input(np.stack(orl)),
        "ferplus": to_face_input(np.stack(fer)),
    }
    assert all(len(x) == FACES_PER_DATASET for x in out.values())
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A fresh weights cache for this module: the first load converts, later ones read it."""
    path = tmp_path_factory.mktemp("keras_fer_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_FER_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def model(cache_dir):
    return dlib_resnet()


@pytest.fixture(scope="module")
def dlib_descriptors(chips) -> dict[str, np.ndarray]:
    try:
        import dlib
    except ImportError:
        msg = "dlib is missing: pip install -r requirements.txt (dlib-bin, test-only)"
        if os.environ.get("FER_REQUIRE_DATA") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    net = dlib.face_recognition_model_v1(str(face_identity.dlib_model_path()))
    return {
        name: np.array(
            [np.asarray(net.compute_face_descriptor(chip)) for chip in x.astype(np.uint8)],
            dtype=np.float32,
        )
        for name, x in chips.items()
    }


@pytest.mark.slow
def test_parity_with_dlib_on_real_faces(model, chips, dlib_descriptors):
    lines, worst_cos, worst_abs = [], 1.0, 0.0
    for name, x in chips.items():
        ours = model.predict(x, batch_size=len(x), verbose=0)
        ref = dlib_descriptors[name]
        cos = _cosine(ours, ref)
        max_abs = float(np.abs(ours - ref).max())
        worst_cos, worst_abs = min(worst_cos, float(cos.min())), max(worst_abs, max_abs)
        lines.append(
            f"{name}: {len(x)} faces, min cosine {cos.min():.8f}, max |diff| " f"{max_abs:.2e}"
        )
    report = "; ".join(lines)
    print(
        f"\ndlib parity: {report}; overall min cosine {worst_cos:.8f}, max |diff| "
        f"{worst_abs:.2e}"
    )
    assert worst_cos >= MIN_COSINE, report
    # The raw fc output, not a normalised one: dlib's descriptors have norms ~1.4.
    assert worst_abs < 1e-3, report


def test_output_shape_and_random_init():
    net = dlib_resnet(weights=None)
    assert net.input_shape == (None, 150, 150, 3)
    assert net.output_shape == (None, 128)
    assert net.count_params() == TOTAL_PARAMS
    out = net.predict(np.full((2, 150, 150, 3), 128.0, np.float32), verbose=0)
    assert out.shape == (2, 128) and np.isfinite(out).all()


def test_config_and_save_round_trip(tmp_path):
    import keras

    net = dlib_resnet(weights=None)
    clone = keras.Model.from_config(net.get_config())
    assert clone.count_params() == net.count_params()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in net.layers]
    net.save(tmp_path / "dlib_resnet.keras")
    loaded = keras.models.load_model(tmp_path / "dlib_resnet.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 150, 150, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))


def test_weights_cache_round_trip(model, chips, cache_dir, monkeypatch):
    files = list(cache_dir.glob("dlib_face_resnet_*.weights.h5"))
    assert len(files) == 1, files
    assert not list(cache_dir.glob(".tmp_*")), "temporary file left behind"

    def no_parse(path):
        raise AssertionError("the cached weights must be used, not the .dat file")

    monkeypatch.setattr(face_identity, "read_dlib_network", no_parse)
    again = dlib_resnet()
    x = chips["orl"][:4]
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.slow
def test_jax_backend_gives_the_same_embeddings(model, chips, tmp_path):
    x = np.concatenate([c[:2] for c in chips.values()])
    np.save(tmp_path / "chips.npy", x)
    script = textwrap.dedent("""
        import sys
        import keras
        import numpy as np
        from keras_fer.models.face_identity import dlib_resnet

        assert keras.backend.backend() == "jax"
        out = dlib_resnet().predict(np.load(sys.argv[1]), verbose=0)
        np.save(sys.argv[2], out)
        """)
    # A fresh cache: the JAX process converts the .dat file itself.
    env = jax_env(KERAS_FER_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "chips.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    jax_out = np.load(tmp_path / "out.npy")
    tf_out = model.predict(x, verbose=0)
    assert _cosine(jax_out, tf_out).min() >= MIN_COSINE
    np.testing.assert_allclose(jax_out, tf_out, atol=1e-4)


def test_to_face_input_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
    out = to_face_input(gray)
    assert out.shape == (3, 150, 150, 3) and out.dtype == np.float32
    assert np.array_equal(out, np.round(out)), "uint8 faces stay on the uint8 grid"
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert 0 <= out.min() and out.max() <= 255
    np.testing.assert_array_equal(to_face_input(gray[..., None]), out)

    flat = to_face_input(np.full((2, 112, 92, 1), 100.5, np.float32))
    assert flat.shape == (2, 150, 150, 3) and flat.dtype == np.float32
    np.testing.assert_allclose(flat, 100.5, rtol=1e-6)
    assert to_face_input(np.zeros((0, 60, 60), np.uint8)).shape == (0, 150, 150, 3)
    with pytest.raises(ValueError, match="Received shape"):
        to_face_input(np.zeros((48, 48)))


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(ModuleNotFoundError, match="pip install face-recognition-models"):
        dlib_resnet()


def test_reader_refuses_a_truncated_file(tmp_path):
    from keras_fer.models.dlib_dat import read_dlib_network

    head = face_identity.dlib_model_path().read_bytes()[:5000]
    (tmp_path / "cut.dat").write_bytes(head)
    with pytest.raises(ValueError, match="runs past the end|unexpected end"):
        read_dlib_network(tmp_path / "cut.dat")
    (tmp_path / "other.dat").write_bytes(b"\x01\x01\x01\x05loss_")
    with pytest.raises(ValueError, match="unsupported loss layer"):
        read_dlib_network(tmp_path / "other.dat")


def test_carried_weights_file_needs_no_package(model, chips, cache_dir, monkeypatch):
    """$KERAS_FER_DLIB_WEIGHTS (a converted file carried to the GPU machine) is used as is,
    without face-recognition-models; a path that is not a file names the variable."""
    carried = next(cache_dir.glob("dlib_face_resnet_*.weights.h5"))
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    monkeypatch.setenv(face_identity.WEIGHTS_ENV, str(carried))
    x = chips["ckplus48"][:4]
    np.testing.assert_array_equal(dlib_resnet().predict(x, verbose=0), model.predict(x, verbose=0))
    monkeypatch.setenv(face_identity.WEIGHTS_ENV, str(cache_dir / "missing.weights.h5"))
    with pytest.raises(FileNotFoundError, match="KERAS_FER_DLIB_WEIGHTS"):
        dlib_resnet()
