"""Builds what the GPU machine's job lists carry, in the git-ignored ``.devdata/`` and ``.whl/``.

A fresh checkout has none of it, and every device call names some of it in ``carry``:

- ``packs``: the experiment packs the trainers read with ``--data_dir=.devdata``
  (``tools/make_pack.py``): ``ckplus48_ck7.npz``, ``ckplus_neutral_ck8.npz``,
  ``ferplus_ferplus8.npz``, their ``_noorl`` twins (for the flagfiles with
  ``--use_orl=false``) and ``fer2013_fer2013.npz`` (``tests/test_prepare_devdata.py``
  checks that every job list's trainer lines find their pack here);
- ``teacher``: ``ferplus_resnet18_std.keras``, the shipped FER+ ResNet-18 as a float16
  ``.keras`` (``tools/keras_from_savedmodel.py``): the ``--init``/``resnet_init``/``rml_init``
  and ``--teacher`` of the ``*_r18*`` flagfiles;
- ``dlib``: ``dlib_face_resnet_f16.weights.h5``, dlib's face network's weights as float16 (11
  MiB instead of 22) for ``$KERAS_FER_DLIB_WEIGHTS``, since the GPU image lacks the
  ``face-recognition-models`` package;
- ``wheels``: Keras and its two pure-Python dependencies for the device's Python 3.12;
- ``folders``: copies of the raw dataset folders (``ckplus48/``, ``ckplus_neutral/``,
  ``orl_faces/``, ``ferplus/`` without FER2013's label CSV), which the trainers read as they
  read ``$FER_DATA_DIR``: what the calls of sessions 8-14 carried. Smaller than the packs (CK+
  1.8 MB against 6.2; FER+ 34 against 40) and without the packs' second JPEG pass of FER+
  Train, but each job aligns the faces again. A pack in ``.devdata`` is read in preference
  to its folder, so carry one or the other.

What exists is kept (delete a file to rebuild it). Needs ``$FER_DATA_DIR`` (or
``--data_dir``) for the packs and the network for the wheels.

    python tools/prepare_devdata.py                    # everything
    python tools/prepare_devdata.py --only=teacher,dlib
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# (dataset, protocol, with ORL's identities): every pack a trainer line of tools/jobs reads
# (tests/test_prepare_devdata.py checks them all). TFE-JL's CK+ lists and the FER+ lists
# train without ORL; one list reads FER2013's labels.
PACKS = (("ckplus48", "ck7", True), ("ckplus_neutral", "ck8", True),
         ("ckplus48", "ck7", False), ("ckplus_neutral", "ck8", False),
         ("ferplus", "ferplus8", True), ("ferplus", "ferplus8", False),
         ("fer2013", "fer2013", True))
TEACHER = "ferplus_resnet18_std.keras"
DLIB_F16 = "dlib_face_resnet_f16.weights.h5"
# Keras as pinned for this checkout (requirements.txt), and its two pure-Python dependencies.
WHEELS = tuple(line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
               if line.startswith("keras==")) + ("optree", "namex")
FOLDERS = ("ckplus48", "ckplus_neutral", "orl_faces", "ferplus")
STEPS = ("packs", "teacher", "dlib", "wheels", "folders")


def float16_weights(src: Path, dst: Path) -> Path:
    """Copies a Keras ``.weights.h5`` with every float32 array stored as float16 (groups,
    attributes and other arrays as they are); Keras casts them back when it loads the file."""
    import h5py

    from keras_fer import io_atomic

    def copy(src_group, dst_group):
        for key, value in src_group.attrs.items():
            dst_group.attrs[key] = value
        for key, item in src_group.items():
            if isinstance(item, h5py.Group):
                copy(item, dst_group.create_group(key))
                continue
            data = item[()]
            stored = dst_group.create_dataset(
                key, data=data.astype(np.float16) if data.dtype == np.float32 else data)
            for name, value in item.attrs.items():
                stored.attrs[name] = value

    with io_atomic.atomic_path(dst) as tmp, h5py.File(src, "r") as s, h5py.File(tmp, "w") as d:
        copy(s, d)
    return dst


def _run(args: list) -> None:
    print("$", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(STEPS),
                        help=f"comma-separated steps of {', '.join(STEPS)}")
    parser.add_argument("--out", type=Path, default=REPO / ".devdata")
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl")
    parser.add_argument("--data_dir", default="", help="dataset root (default: $FER_DATA_DIR)")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        print(f"error: --only={args.only}: unknown step(s) {', '.join(unknown)}; the steps are "
              f"{', '.join(STEPS)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    if "packs" in steps:
        from keras_fer.data.packs import pack_name

        for dataset, protocol, use_orl in PACKS:
            if not (args.out / pack_name(dataset, protocol, use_orl=use_orl)).exists():
                _run([python, "tools/make_pack.py", f"--dataset={dataset}",
                      f"--protocol={protocol}", f"--out={args.out}"]
                     + ([] if use_orl else ["--no_orl"])
                     + ([f"--data_dir={args.data_dir}"] if args.data_dir else []))
    if "teacher" in steps and not (args.out / TEACHER).exists():
        _run([python, "tools/keras_from_savedmodel.py",
              "--savedmodel=saved_models/expression_ferplus_resnet18/1",
              "--backbone=resnet18_std", f"--out={args.out / TEACHER}", "--float16"])
    if "dlib" in steps and not (args.out / DLIB_F16).exists():
        from keras_fer.models import face_identity

        face_identity.dlib_resnet()  # converts the installed .dat file into the cache once
        cache = face_identity.weights_cache_path(face_identity.dlib_model_path())
        print(f"{cache} -> {float16_weights(cache, args.out / DLIB_F16)}", flush=True)
    if "wheels" in steps and not list(args.wheels.glob("keras-*.whl")):
        platforms = [f"--platform={p}" for p in (
            "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
            "manylinux2014_x86_64")]
        _run([python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
              "--python-version=3.12", "--implementation=cp", *platforms,
              f"--dest={args.wheels}", *WHEELS])
    if "folders" in steps:
        from keras_fer.data.paths import data_dir

        root = Path(args.data_dir) if args.data_dir else data_dir()
        for name in FOLDERS:
            if not (args.out / name).exists():
                shutil.copytree(root / name, args.out / name, copy_function=shutil.copyfile,
                                ignore=shutil.ignore_patterns(
                                    "fer2013_original_labels_recovered.csv"))
                for folder in [args.out / name, *(args.out / name).rglob("*")]:
                    if folder.is_dir():  # the shared copy's folders may be read-only
                        folder.chmod(0o755)
                print(f"{root / name} -> {args.out / name}", flush=True)
    for path in sorted(list(args.out.iterdir()) + list(args.wheels.glob("*.whl"))):
        size = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
                else path.stat().st_size)
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
              f"{size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
