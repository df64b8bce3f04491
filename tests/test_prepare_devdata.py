"""tools/prepare_devdata.py: the float16 copy of a weights file the GPU machine loads, and
its one-line error for an unknown step."""

import h5py
import keras
import numpy as np

from script_loader import load_script

prepare = load_script("tools/prepare_devdata.py")


def _datasets(path):
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: found.setdefault(name, item.dtype)
                     if isinstance(item, h5py.Dataset) else None)
    return found


def test_float16_weights_load_back_into_the_model(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    src = tmp_path / "model.weights.h5"
    model.save_weights(src)
    dst = prepare.float16_weights(src, tmp_path / "model_f16.weights.h5")
    before, after = _datasets(src), _datasets(dst)
    assert set(before) == set(after) and "float32" in {str(t) for t in before.values()}
    assert all(str(after[k]) == ("float16" if str(t) == "float32" else str(t))
               for k, t in before.items())
    assert dst.stat().st_size < src.stat().st_size
    again = keras.models.clone_model(model)
    again.load_weights(dst)
    assert all(w.dtype == "float32" for w in again.weights)
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-2, atol=1e-3)


def test_unknown_step_is_one_line(tmp_path, capsys):
    assert prepare.main(["--only=packs,weights", f"--out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --only=packs,weights: unknown step(s) weights") and (
        err.count("\n") == 1)
    assert prepare.WHEELS[0].startswith("keras==3.")


def test_folders_step_copies_the_raw_datasets_writable(tmp_path, ckplus48_dir, ckplus_neutral_dir,
                                                       ferplus_dir, orl_dir, capsys):
    from keras_fer.training import settings

    out = tmp_path / ".devdata"
    root = ckplus48_dir.parents[1]
    argv = ["--only=folders", f"--out={out}", f"--wheels={tmp_path}", f"--data_dir={root}"]
    assert prepare.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(prepare.FOLDERS)
    for dataset in ("ckplus48", "ckplus_neutral", "ferplus"):
        settings.check_data_dir(dataset, str(out))
    assert not (out / "ferplus" / "fer2013_original_labels_recovered.csv").exists()
    assert sorted(p.name for p in (out / "ferplus" / "data" / "FER2013Test").iterdir()) == sorted(
        p.name for p in (ferplus_dir / "FER2013Test").iterdir())
    for folder in [out, *out.rglob("*")]:
        if folder.is_dir():
            (folder / "probe").write_text("")  # writable, unlike the shared copy may be
    # What exists is kept: a second run copies nothing.
    capsys.readouterr()
    assert prepare.main(argv) == 0 and " -> " not in capsys.readouterr().out
