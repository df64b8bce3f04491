"""Writes the experiment packs that the GPU machine trains from (``--data_dir=.devdata``).

The GPU image has no TensorFlow and the raw image folders are too large to carry, so each
dataset travels as one ``.npz`` of aligned faces, labels, subjects, splits and ORL identities
(``keras_fer.data.packs.save_pack``); the trainers read it instead of the dataset when
``--data_dir`` holds it. FER+ and FER2013 store their ~28k training faces as JPEG (quality 90:
43 MB, the most that fits the device's 64 MiB working tree beside the code and a CK+ pack);
validation and test faces stay lossless, so reported accuracy is on the original pixels.
Built from a FER+ copy whose Train split is a JPEG mosaic (``faces.jpg``), the training faces
are JPEG-encoded a second time: a run trained from such a pack should say so.

    python tools/make_pack.py --dataset=ckplus48 --protocol=ck7 --out=.devdata
    python tools/make_pack.py --dataset=fer2013 --out=.devdata
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_fer.data import experiments, packs, registry


def make_pack(dataset: str, out: str | Path, protocol: str = "", data_dir: str = "",
              jpeg_quality: int = 90, limit: int = 0, use_orl: bool = True) -> Path:
    """Reads ``dataset`` and writes its pack into ``out``; returns the pack's path."""
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100; got {jpeg_quality}.")
    fixed = registry.get(dataset).fixed_split
    # Fixed-split packs store their native 48-pixel faces (the loader resizes them to 60).
    exp = experiments.load_experiment(dataset, data_dir, protocol, use_orl=use_orl, limit=limit,
                                      **({"face_size": 48} if fixed else {}))
    return packs.save_pack(exp, out, limit=limit, use_orl=use_orl,
                           jpeg_train=(48, jpeg_quality) if fixed else None)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=registry.DATASETS)
    parser.add_argument("--protocol", default="", help="class subset (default: the dataset's)")
    parser.add_argument("--data_dir", default="", help="dataset root (default: $FER_DATA_DIR)")
    parser.add_argument("--out", default=".devdata")
    parser.add_argument("--jpeg_quality", type=int, default=90,
                        help="JPEG quality of FER+/FER2013 training faces")
    parser.add_argument("--limit", type=int, default=0, help="images per split (FER+, FER2013)")
    parser.add_argument("--no_orl", action="store_true", help="leave the ORL identities out")
    args = parser.parse_args(argv)
    path = make_pack(args.dataset, args.out, args.protocol, args.data_dir, args.jpeg_quality,
                     args.limit, not args.no_orl)
    print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
