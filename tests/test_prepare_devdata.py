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


def _job_pack(line: str) -> str | None:
    """The experiment pack a job line reads with ``--data_dir=.devdata``, its flags parsed as
    its trainer parses them (flagfile first, then the line's own), or None for a job that reads
    no pack or is not a trainer's. Run from the repository root, where the lines' flagfile
    paths start."""
    import importlib
    import shlex

    from flag_helpers import parsed_flags
    from keras_fer.data import packs, registry

    words = shlex.split(line.split(" ", 1)[1] if line.startswith("@after=") else line)
    if "--data_dir=.devdata" not in words[1:] or not words[0].startswith("trainers."):
        return None  # tools' flags (distill_identity, pretrain_hng) are not a trainer's
    importlib.import_module(words[0])  # defines the trainer's own flags
    with parsed_flags(words[0], *words[1:]) as parsed:
        protocol = parsed.protocol or registry.get(parsed.dataset).protocol
        return packs.pack_name(parsed.dataset, protocol, parsed.limit, parsed.use_orl)


def test_every_job_list_finds_its_pack(monkeypatch):
    """Session 17's first FER+ TFE-JL and IF-GAN calls stopped at once: their flagfiles say
    --use_orl=false, whose pack prepare_devdata did not build. Every job list (those still to
    run, and those that ran, to be rerun) must read only packs that prepare_devdata builds."""
    from keras_fer.data import packs

    monkeypatch.chdir(prepare.REPO)

    gpu_run = load_script("tools/gpu_run.py")
    built = {packs.pack_name(d, p, use_orl=o) for d, p, o in prepare.PACKS}
    lists = sorted((prepare.REPO / "tools" / "jobs").glob("*.txt"))
    needed = {}
    for path in lists:
        for line in gpu_run.read_jobs(path):
            pack = _job_pack(line)
            if pack:
                needed.setdefault(pack, path.name)
    assert needed, "no job list reads a pack: the check would test nothing"
    missing = {pack: name for pack, name in needed.items() if pack not in built}
    assert not missing, f"packs the job lists read but prepare_devdata does not build: {missing}"
    assert "ferplus_ferplus8_noorl.npz" in needed  # TFE-JL's and IF-GAN's FER+ lists
