"""The paper's Fig. 3 ablation on the synthetic faces: accuracy vs share of identity labels.

For each fraction in ``--fractions``, the chosen IDEnNet variant trains with identity labels
of only that share of each fold's training subjects (``identity_fraction``; all images are
still used for the expression loss). For variants with an identity stream (F, IF) the
identity pretraining sees only the labelled subjects; for I and IF the identity head's focal
loss is computed on the labelled samples only. Fraction 0 is the variant without identity
labels at all, i.e. ``original`` (for I/IF; IDEnNet cannot train an identity head or
stream without labels).

Same folds, seeds and budget for every point; the emotion pretraining of each fold is
trained once and shared (see ``synthetic_claim.py``). With ``--work_dir`` pointing at
``synthetic_claim.py``'s runs and the same budget flags, its ``original`` and full-label
runs are reused instead of retrained.

Run::

    python benchmarks/identity_fraction.py --variant=if --fractions=0,0.25,0.5,1

writes ``benchmarks/results/identity_fraction.json`` and ``identity_fraction.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Dict, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_claim  # noqa: E402  (sets KERAS_BACKEND before Keras is imported)

from keras_fer.data.experiments import load_experiment  # noqa: E402


def plot(doc: Dict, path: Path) -> Path:
    """Mean accuracy (± std over folds, and each fold) against the fraction of identities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = doc["points"]
    x = [p["identity_fraction"] for p in points]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.errorbar(x, [p["mean_accuracy"] for p in points], yerr=[p["std_accuracy"] for p in points],
                marker="o", capsize=3, label="mean ± std over folds")
    for p in points:
        ax.scatter([p["identity_fraction"]] * len(p["folds"]),
                   [f["accuracy"] for f in p["folds"]], s=10, color="gray", alpha=0.6)
    s = doc["settings"]
    ax.set_xlabel("fraction of training subjects with identity labels")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"IDEnNet_{doc['variant'].upper()} on synthetic ({s['protocol']}), folds "
                 f"{s['folds_run']}; fraction 0 = original", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    synthetic_claim.add_common_args(parser)
    parser.add_argument("--variant", default="if", choices=["i", "f", "if"])
    parser.add_argument("--fractions", default="0,0.25,0.5,1")
    parser.add_argument("--work_dir", default="runs/synthetic_claim")
    parser.add_argument("--out", default=str(synthetic_claim.HERE / "results" /
                                             "identity_fraction"),
                        help="Output path without extension (.json and .png are written).")
    args = parser.parse_args(argv)

    fractions = sorted(float(f) for f in args.fractions.split(","))
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"Fractions must be in [0, 1]. Received: --fractions={args.fractions}")
    work_dir = Path(args.work_dir)
    base = synthetic_claim.base_config(args, work_dir)
    exp = load_experiment("synthetic", protocol="ck7", seed=args.seed)
    folds = list(range(args.run_folds))
    doc = {"variant": args.variant, "settings": synthetic_claim.settings(args, exp, folds),
           "environment": synthetic_claim.environment(), "points": []}
    for fraction in fractions:
        if fraction == 0.0:
            variant, name, shared = "original", "original", ("pretrain_emotion",)
        elif fraction == 1.0:
            variant, name = args.variant, args.variant
            shared = synthetic_claim.SHARED_STAGES
        else:
            # The identity stream learns from the labelled subjects only: not shareable.
            variant, name = args.variant, f"{args.variant}_idfrac{fraction:g}"
            shared = ("pretrain_emotion",)
        config = dataclasses.replace(base, variant=variant,
                                     identity_fraction=fraction if fraction > 0 else 1.0,
                                     model_dir=str(work_dir / name))
        point = synthetic_claim.run_folds(config, exp, work_dir, folds, shared)
        point["identity_fraction"] = fraction
        doc["points"].append(point)
        print(f"identity fraction {fraction:g} ({name}): {point['mean_accuracy']:.2f} ± "
              f"{point['std_accuracy']:.2f}%", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
