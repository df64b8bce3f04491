"""Combines runs over the same folds by averaging their per-face test probabilities.

A member is a variant folder of ``benchmarks/results/gpu/`` with ``predictions/fold<k>.json``
(copied by ``tools/import_runs.py``) or a trainer's ``--model_dir`` with
``fold_<k>/test_predictions.json`` (written by the runner for every fold). Members must have
scored the same faces in the same order on every fold they share: the labels and subjects are
compared, and a mismatch (other folds, other data) is a one-line error. The ensemble's
probabilities are the members' mean (soft voting); printed per fold with each member's
accuracy, then the mean ± std over folds (std over folds, as in ``results.json``); ``--out``
writes the same as JSON. Where every member also scored the fold's validation faces
(``valid_*`` keys, runs with an inner split or FER+ Valid), their accuracies are given too:
the figures to choose members on.

Decide the members before looking at the result (e.g. all seeds of one run, or one run of
each method): picking members by their test accuracy would be tuning on the test folds.

    python tools/ensemble_folds.py benchmarks/results/gpu/<run>/<variant>_s{0,1,2} \\
        [--out benchmarks/results/<name>.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


class EnsembleError(ValueError):
    """Members that cannot be combined, named with the fix."""


def load_member(path: Path) -> dict:
    """``{fold: {"labels", "subjects", "probabilities"}}`` of one member folder."""
    if not path.is_dir():
        raise EnsembleError(f"{path}: no such folder (give a variant or run folder)")
    files = {int(p.stem[4:]): p for p in path.glob("predictions/fold*.json")}
    files.update({int(p.parent.name[5:]): p for p in path.glob("fold_*/test_predictions.json")})
    if not files:
        raise EnsembleError(f"{path}: no predictions/fold<k>.json or fold_<k>/"
                            "test_predictions.json (runs from before session 15 did not write "
                            "them; give a run made since)")
    out = {}
    for fold, file in sorted(files.items()):
        doc = json.loads(file.read_text())
        out[fold] = {split: {"labels": np.asarray(doc[f"{key}labels"]),
                             "subjects": doc[f"{key}subjects"],
                             "probabilities": np.asarray(doc[f"{key}probabilities"], np.float64)}
                     for split, key in (("test", ""), ("valid", "valid_"))
                     if f"{key}labels" in doc}
    return out


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(100.0 * np.mean(probabilities.argmax(-1) == labels))


def ensemble(members: dict) -> dict:
    """Per-fold and mean accuracy of each member and of their mean probabilities.

    Args:
        members: ``{name: load_member(...)}``, at least two.
    """
    if len(members) < 2:
        raise EnsembleError("give at least two members to combine")
    names = list(members)
    folds = sorted(set.intersection(*(set(m) for m in members.values())))
    if not folds:
        raise EnsembleError(f"the members share no fold: {', '.join(names)}")
    rows = []
    for fold in folds:
        row = {"fold": fold, "num_test": int(len(members[names[0]][fold]["test"]["labels"]))}
        for split in ("test", "valid"):
            if all(split in members[n][fold] for n in names):
                row.update(_score_split(members, names, fold, split))
        rows.append(row)
    out = {"members": names, "folds": rows}
    for split, prefix in (("test", ""), ("valid", "valid_")):
        if not all(f"{prefix}ensemble" in r for r in rows):
            continue
        ens = np.array([r[f"{prefix}ensemble"] for r in rows])
        out[f"{prefix}mean_accuracy"] = round(float(ens.mean()), 4)
        out[f"{prefix}std_accuracy"] = round(float(ens.std()), 4)
        out[f"{prefix}member_mean_accuracy"] = {
            n: round(float(np.mean([r[f"{prefix}members"][n] for r in rows])), 4)
            for n in names}
    return out


def _score_split(members: dict, names: list, fold: int, split: str) -> dict:
    """One fold's member and ensemble accuracies on ``split`` (keys prefixed ``valid_`` for
    the validation faces), after checking the members scored the same faces."""
    first = members[names[0]][fold][split]
    for name in names[1:]:
        other = members[name][fold][split]
        if (not np.array_equal(first["labels"], other["labels"])
                or first["subjects"] != other["subjects"]):
            raise EnsembleError(f"fold {fold}: {name} scored other {split} faces than "
                                f"{names[0]} (other folds or data: combine runs with the same "
                                "--fold_seed, dataset and protocol)")
        if other["probabilities"].shape != first["probabilities"].shape:
            raise EnsembleError(f"fold {fold}: {name} has other classes than {names[0]}")
    mean = np.mean([members[n][fold][split]["probabilities"] for n in names], axis=0)
    prefix = "" if split == "test" else "valid_"
    return {f"{prefix}members": {n: round(_accuracy(members[n][fold][split]["probabilities"],
                                                    first["labels"]), 4) for n in names},
            f"{prefix}ensemble": round(_accuracy(mean, first["labels"]), 4)}


def markdown(result: dict) -> str:
    names = result["members"]
    lines = ["| fold | faces | " + " | ".join(names) + " | ensemble |",
             "| ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: |"]
    for r in result["folds"]:
        lines.append(f"| {r['fold']} | {r['num_test']} | "
                     + " | ".join(f"{r['members'][n]:.2f}" for n in names)
                     + f" | {r['ensemble']:.2f} |")
    lines.append("| mean | | " + " | ".join(f"{result['member_mean_accuracy'][n]:.2f}"
                                           for n in names)
                 + f" | {result['mean_accuracy']:.2f} ± {result['std_accuracy']:.2f} |")
    if "valid_mean_accuracy" in result:
        lines.append("| validation mean | | " + " | ".join(
            f"{result['valid_member_mean_accuracy'][n]:.2f}" for n in names)
            + f" | {result['valid_mean_accuracy']:.2f} ± {result['valid_std_accuracy']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", nargs="+", type=Path, help="variant or run folders")
    parser.add_argument("--out", type=Path, help="also write the result as this JSON file")
    args = parser.parse_args(argv)
    try:
        names = [str(p) for p in args.members]
        if len(set(names)) != len(names):
            raise EnsembleError("a member is given twice")
        result = ensemble({str(p): load_member(p) for p in args.members})
    except EnsembleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(result), end="")
    if args.out:
        from keras_fer import io_atomic

        io_atomic.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
