"""Where a method and its baseline differ, face by face, and what kind of errors they make.

Both are variants of GPU runs over the same folds and seeds (``<run>/<variant>_s<seed>/``
with ``predictions/fold<k>.json``, as ``tools/import_runs.py`` copies them). For every class:
its test faces over all fold runs, each variant's accuracy, and how many faces one variant
gets right that the other misses. Where the protocol has a ``neutral`` class (CK+ 8), each
variant's errors are also split into expressive faces read as neutral, neutral faces read as
an expression, and expressions read as another expression; for the last, the probability the
model gives that wrong class on the same person's neutral faces of the same fold (an error
that person's resting face shares is what an identity part is meant to remove) against other
people's. Faces whose person is unknown (FER+'s empty subject ids) get the error kinds but not
that comparison: its fields are ``None``.

    python tools/compare_errors.py benchmarks/results/gpu/idferm_ckplus8_r18_face rml baseline \\
        [--out benchmarks/results/compare_errors_idferm_ckplus8_r18_face.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble_folds import EnsembleError, load_member  # noqa: E402

# A wrong class the person's own neutral faces give more than this probability is "shared".
SHARED_PROBABILITY = 0.05


def _seeds(run: Path, variant: str) -> dict:
    found = {int(p.name.rsplit("_s", 1)[1]): p for p in run.glob(f"{variant}_s*")
             if p.name.rsplit("_s", 1)[1].isdigit()}
    if not found and (run / variant).is_dir():
        found = {0: run / variant}
    if not found:
        raise EnsembleError(f"{run}: no {variant}_s<seed>/ or {variant}/ folder")
    return found


def _class_names(folder: Path, num_classes: int) -> list:
    from keras_fer.data.labels import protocol_classes

    doc = json.loads((folder / "results.json").read_text()) if (
        folder / "results.json").exists() else {}
    try:
        names = list(protocol_classes(doc.get("protocol", "")))
    except (KeyError, ValueError):
        names = []
    return names if len(names) == num_classes else [str(c) for c in range(num_classes)]


def _error_kinds(faces: list, neutral: int) -> dict:
    """``faces``: ``(label, predicted, probabilities, own_neutral, other_neutral)`` of every
    fold run's test faces of one variant."""
    kinds = {"expressive_as_neutral": 0, "neutral_as_expressive": 0, "expressive_as_other": 0}
    own, other = [], []
    for label, pred, _, own_neutral, other_neutral in faces:
        if pred == label:
            continue
        if label == neutral:
            kinds["neutral_as_expressive"] += 1
        elif pred == neutral:
            kinds["expressive_as_neutral"] += 1
        else:
            kinds["expressive_as_other"] += 1
            if len(own_neutral):
                own.append(float(own_neutral[:, pred].max()))
                other.append(float(other_neutral[:, pred].mean()) if len(other_neutral) else 0.0)
    kinds["own_neutral_wrong_class_median"] = round(float(np.median(own)), 4) if own else None
    kinds["own_neutral_shares_wrong_class"] = (int(np.sum(np.array(own) > SHARED_PROBABILITY))
                                               if own else None)
    kinds["other_neutral_wrong_class_mean"] = round(float(np.mean(other)), 4) if other else None
    return kinds


def compare(run: Path, a: str, b: str) -> dict:
    seeds_a, seeds_b = _seeds(run, a), _seeds(run, b)
    seeds = sorted(set(seeds_a) & set(seeds_b))
    if not seeds:
        raise EnsembleError(f"{run}: {a} and {b} share no seed ({sorted(seeds_a)} against "
                            f"{sorted(seeds_b)})")
    faces = {a: [], b: []}
    fold_runs, names = 0, None
    for seed in seeds:
        pa, pb = load_member(seeds_a[seed]), load_member(seeds_b[seed])
        for fold in sorted(set(pa) & set(pb)):
            ta, tb = pa[fold]["test"], pb[fold]["test"]
            if (not np.array_equal(ta["labels"], tb["labels"]) or ta["subjects"] != tb["subjects"]
                    or ta["probabilities"].shape != tb["probabilities"].shape):
                raise EnsembleError(f"seed {seed} fold {fold}: {a} and {b} scored other faces "
                                    "or classes (other folds or data)")
            fold_runs += 1
            names = names or _class_names(seeds_a[seed], ta["probabilities"].shape[1])
            neutral = names.index("neutral") if "neutral" in names else -1
            subjects = np.asarray(ta["subjects"])
            # The project's unknown subject is "" (FER+ has none): no own / other neutral faces.
            known = np.char.strip(subjects.astype(str)) != ""
            is_neutral = (ta["labels"] == neutral) & known
            for name, t in ((a, ta), (b, tb)):
                probs = t["probabilities"]
                for i, label in enumerate(t["labels"]):
                    # A face of no known person has no own (or other) neutral faces.
                    neutral_rows = is_neutral & known[i]
                    same = subjects == subjects[i]
                    faces[name].append((int(label), int(probs[i].argmax()), probs[i],
                                        probs[neutral_rows & same], probs[neutral_rows & ~same]))
    if not fold_runs:
        raise EnsembleError(f"{run}: {a} and {b} share no fold")
    classes = {}
    for c, cname in enumerate(names):
        rows = [(fa, fb) for fa, fb in zip(faces[a], faces[b]) if fa[0] == c]
        right_a = np.array([fa[1] == c for fa, _ in rows], bool)
        right_b = np.array([fb[1] == c for _, fb in rows], bool)
        classes[cname] = {"faces": len(rows),
                          f"{a}_accuracy": round(100.0 * right_a.mean(), 2) if rows else None,
                          f"{b}_accuracy": round(100.0 * right_b.mean(), 2) if rows else None,
                          f"{a}_only": int(np.sum(right_a & ~right_b)),
                          f"{b}_only": int(np.sum(right_b & ~right_a))}
    out = {"run": run.name, "variants": [a, b], "seeds": seeds, "fold_runs": fold_runs,
           "faces": len(faces[a]), "classes": classes,
           f"{a}_only": sum(v[f"{a}_only"] for v in classes.values()),
           f"{b}_only": sum(v[f"{b}_only"] for v in classes.values())}
    if "neutral" in names:
        out["errors"] = {name: _error_kinds(faces[name], names.index("neutral"))
                         for name in (a, b)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder of benchmarks/results/gpu/")
    parser.add_argument("a", help="the method's variant, e.g. rml")
    parser.add_argument("b", help="its baseline's variant, e.g. baseline")
    parser.add_argument("--out", type=Path, help="also write the result as this JSON file")
    args = parser.parse_args(argv)
    try:
        result = compare(args.run, args.a, args.b)
    except EnsembleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        from keras_fer import io_atomic

        io_atomic.write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
