"""Copies a GPU call's extracted ``runs/`` tree into ``benchmarks/results/gpu/``.

For every ``<run>/<variant>/results.json`` under ``--runs`` (a run folder holding its own
``results.json`` goes to ``<run>/<variant>``, the variant read from that file): the
aggregated ``results.json`` and ``config.json``, its plots, ``verification.json``, each fold's
``hng.json`` (as ``hng_fold<k>.json``), fold 0's per-stage ``timing.json`` (as
``timing/<stage>.json``), each fold's ``test_predictions.json`` (as
``predictions/fold<k>.json``, for ``tools/ensemble_folds.py``) and fold 0's last HNG grid,
plus the run's ``variants.json``.
Nothing else (no weights, no per-epoch histories) is committed.

    python tools/import_runs.py --runs=/path/to/extracted/runs tfe_ckplus7 idferm_ckplus8

``--hng_probe=<setting>`` imports one IDFERM run stopped after its HNG as an HNG setting of
``idferm_hng_probe/`` (:func:`import_hng_probe`).

Folds of one run that came back from several calls are merged first (copy the ``fold_<k>``
folders side by side) and re-aggregated with the trainer's ``--fold=-1 --aggregate_only``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "gpu"
VARIANT_FILES = ("results.json", "config.json", "confusion_matrix.png", "per_class_accuracy.png",
                 "verification.json")


def _variant_dirs(run_dir: Path) -> list[Path]:
    if (run_dir / "results.json").exists():
        return [run_dir]
    return sorted(p.parent for p in run_dir.glob("*/results.json"))


def import_run(run_dir: Path, dest_root: Path = RESULTS) -> list[Path]:
    """Copies one run's committed files; returns the variant folders written."""
    variants = _variant_dirs(run_dir)
    if not variants:
        raise FileNotFoundError(f"No results.json in {run_dir} or its sub-folders: was the run "
                                "aggregated (--fold=-1 --aggregate_only)?")
    written = []
    for src in variants:
        # A run folder's own results go to <run>/<variant>; a sub-folder keeps its name
        # (the variant, or <variant>_s<seed> for one of several seeds over the same folds).
        name = (json.loads((src / "results.json").read_text())["variant"] if src == run_dir
                else src.name)
        dest = dest_root / run_dir.name / name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name in VARIANT_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, dest / name)
        _copy_hng(src, dest)
        _copy_per_fold(src, dest, "test_predictions.json", "predictions/{fold}.json")
        for timing in sorted(src.glob("fold_0/*/timing.json")):
            (dest / "timing").mkdir(exist_ok=True)
            shutil.copy2(timing, dest / "timing" / f"{timing.parent.name}.json")
        written.append(dest)
    if (run_dir / "variants.json").exists():
        shutil.copy2(run_dir / "variants.json", dest_root / run_dir.name / "variants.json")
    return written


def _copy_per_fold(src: Path, dest: Path, name: str, pattern: str) -> None:
    """Each ``fold_<k>/<name>`` of ``src`` as ``dest / pattern.format(fold="fold<k>")``."""
    for path in sorted(src.glob(f"fold_*/{name}")):
        target = dest / pattern.format(fold=path.parent.name.replace("_", ""))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _copy_hng(src: Path, dest: Path, faces: bool = False) -> None:
    """Each fold's ``hng.json`` as ``hng_fold<k>.json`` (and, with ``faces``, its
    ``hng_test_faces.npz`` as ``hng_test_faces_fold<k>.npz``) and fold 0's last HNG grid."""
    names = {"hng.json": "hng_{fold}.json"}
    if faces:
        names["hng_test_faces.npz"] = "hng_test_faces_{fold}.npz"
    for name, pattern in names.items():
        _copy_per_fold(src, dest, name, pattern)
    grids = sorted((src / "fold_0" / "hng" / "grids").glob("epoch_*.png"))
    if grids:
        epoch = int(grids[-1].stem.split("_")[-1])
        shutil.copy2(grids[-1], dest / f"hng_grid_fold0_epoch{epoch}.png")


def import_hng_probe(run_dir: Path, dest: Path) -> Path:
    """One HNG setting of an IDFERM run stopped after its HNG (``extra stop_after="hng"``,
    no ``results.json``) into ``dest`` (``benchmarks/results/gpu/idferm_hng_probe/<setting>``,
    what ``benchmarks/identity.py --hng_probe`` reads): ``config.json``, the folds'
    ``hng.json`` and generated test faces (git-ignored there), fold 0's last grid."""
    if not (run_dir / "config.json").exists() or not any(run_dir.glob("fold_*/hng.json")):
        raise FileNotFoundError(f"{run_dir}: no config.json and fold_<k>/hng.json (an IDFERM "
                                "run with extra stop_after='hng'?)")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(run_dir / "config.json", dest / "config.json")
    _copy_hng(run_dir, dest, faces=True)
    return dest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="extracted runs/ folder of a GPU call")
    parser.add_argument("--dest", default=str(RESULTS))
    parser.add_argument("--hng_probe", default="", help="import the one run named as this HNG "
                        "setting into <dest>/idferm_hng_probe/<hng_probe>")
    parser.add_argument("names", nargs="+", help="run folders under --runs to import")
    args = parser.parse_args(argv)
    if args.hng_probe:
        if len(args.names) != 1:
            parser.error("--hng_probe imports one run folder")
        dest = Path(args.dest) / "idferm_hng_probe" / args.hng_probe
        print(f"{Path(args.runs) / args.names[0]} -> "
              f"{import_hng_probe(Path(args.runs) / args.names[0], dest)}")
        return
    for name in args.names:
        for dest in import_run(Path(args.runs) / name, Path(args.dest)):
            print(f"{Path(args.runs) / name} -> {dest}")


if __name__ == "__main__":
    main()
