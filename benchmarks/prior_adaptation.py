"""Estimating a photo set's own class mix (EM label-shift adaptation) against the fixed prior.

``keras-fer predict`` divides the model's FER+ Train class prior out to the power ``tau``
(``class_prior.json``, chosen on FER+ Valid's balanced accuracy): the answer for a set where
every class is equally common. A batch of photos has a mix of its own, and EM (Saerens,
Latinne and Decaestecker, 2002) estimates it from the model's probabilities on that batch
alone, no labels: re-weight each face's probabilities by ``pi / pi_train``, set ``pi`` to
their mean, repeat. That needs calibrated probabilities. Ours are trained on crowd-vote
distributions, not majority labels, so they are first calibrated to majority labels on FER+
Valid with bias-corrected temperature scaling (BCTS: ``softmax(log p / T + b)``, Alexandari,
Kundaje and Shrikumar, 2020) and EM starts from the calibrated model's mean on in-domain faces.

Measured on FER+ Valid only (the choice of method is made here): 10 random halves, BCTS
fitted on one half, label-shifted batches drawn from the other (every class equally common; a
Dirichlet(1) mix; FER+'s own mix), each of ``--sizes`` faces, 8 batches per setting and half.
Accuracy of: the model's own output (``training``), the shipped prior divided out
(``balanced``), EM on the uncalibrated output (``em``), and BCTS then EM (``bcts_em``).
Then, for the record only (nothing is chosen on it), all 981 CK+48 faces (7 classes, as
``benchmarks/cross_dataset.py`` scores them) as one batch, with BCTS fitted on all of Valid.

    python benchmarks/prior_adaptation.py

writes ``benchmarks/results/prior_adaptation.json`` and ``prior_adaptation.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, Sequence, Tuple

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = [("expression_ferplus_resnet18", "expression_ferplus_resnet18"),
          ("expression_ferplus_edge_tflite_int8",
           "expression_ferplus_edge_tflite/tflite/model_int8.tflite")]
SCENARIOS = ("uniform", "dirichlet1", "ferplus")
METHODS = ("training", "balanced", "em", "bcts_em")


def reweight(probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each row times ``weights``, renormalised."""
    q = np.asarray(probabilities, np.float64) * weights
    return q / q.sum(axis=1, keepdims=True)


def em_prior(probabilities: np.ndarray, source_prior: np.ndarray, iterations: int = 1000,
             tol: float = 1e-8) -> np.ndarray:
    """The batch's class mix by EM, for probabilities calibrated under ``source_prior``."""
    prior = np.asarray(source_prior, np.float64)
    estimate = prior.copy()
    for _ in range(iterations):
        new = reweight(probabilities, estimate / prior).mean(axis=0)
        if np.abs(new - estimate).max() < tol:
            return new
        estimate = new
    return estimate


def fit_bcts(probabilities: np.ndarray, labels: np.ndarray) -> Tuple[float, np.ndarray]:
    """``(T, b)`` minimising the NLL of ``labels`` under ``softmax(log p / T + b)``."""
    from scipy.optimize import minimize

    logp = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0))
    k = logp.shape[1]

    def nll(theta):
        z = logp * theta[0] + theta[1:]  # theta[0] = 1 / T: the NLL is convex in it and b
        z = z - z.max(axis=1, keepdims=True)
        return -np.mean(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(axis=1)))

    found = minimize(nll, np.r_[1.0, np.zeros(k)], method="L-BFGS-B",
                     bounds=[(0.05, 20.0)] + [(None, None)] * k)
    return 1.0 / float(found.x[0]), found.x[1:]


def calibrate(probabilities: np.ndarray, temperature: float, bias: np.ndarray) -> np.ndarray:
    z = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)) / temperature + bias
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def answers(probabilities: np.ndarray, train_prior: np.ndarray, tau: float,
            calibration: Tuple[float, np.ndarray], calibrated_prior: np.ndarray
            ) -> Dict[str, np.ndarray]:
    """Each method's probabilities for one batch."""
    from keras_fer.inference.prior import adjust

    calibrated = calibrate(probabilities, *calibration)
    return {"training": np.asarray(probabilities, np.float64),
            "balanced": adjust(probabilities, train_prior, tau),  # as the predictor does
            "em": reweight(probabilities, em_prior(probabilities, train_prior) / train_prior),
            "bcts_em": reweight(calibrated, em_prior(calibrated, calibrated_prior)
                                / calibrated_prior)}


def shifted_batch(rng: np.random.Generator, labels: np.ndarray, pool: np.ndarray,
                  mix: np.ndarray, size: int) -> np.ndarray:
    """Indices into ``labels``: ``size * mix[c]`` faces of each class ``c`` drawn from
    ``pool`` with replacement."""
    return np.concatenate([rng.choice(pool[labels[pool] == c], int(round(size * m)))
                           for c, m in enumerate(mix) if round(size * m) > 0])


def simulate(probabilities: np.ndarray, labels: np.ndarray, train_prior: np.ndarray,
             tau: float, sizes: Sequence[int], halves: int = 10, batches: int = 8,
             seed: int = 0) -> Dict:
    """Mean accuracy (%) per batch size, scenario and method (see the module docstring)."""
    rng = np.random.default_rng(seed)
    k = probabilities.shape[1]
    acc: Dict = {str(n): {s: {m: [] for m in METHODS} for s in SCENARIOS} for n in sizes}
    temperatures = []
    for _ in range(halves):
        order = rng.permutation(len(labels))
        fit_half, test_half = order[: len(order) // 2], order[len(order) // 2:]
        calibration = fit_bcts(probabilities[fit_half], labels[fit_half])
        temperatures.append(calibration[0])
        calibrated_prior = calibrate(probabilities[fit_half], *calibration).mean(axis=0)
        for n in sizes:
            for scenario in SCENARIOS:
                for _ in range(batches):
                    mix = {"uniform": np.full(k, 1.0 / k), "ferplus": train_prior,
                           "dirichlet1": None}[scenario]
                    mix = rng.dirichlet(np.ones(k)) if mix is None else mix
                    idx = shifted_batch(rng, labels, test_half, mix, n)
                    out = answers(probabilities[idx], train_prior, tau, calibration,
                                  calibrated_prior)
                    for method, p in out.items():
                        acc[str(n)][scenario][method].append(
                            100.0 * float(np.mean(p.argmax(1) == labels[idx])))
    table = {n: {s: {m: round(float(np.mean(v)), 2) for m, v in ms.items()}
                 for s, ms in ss.items()} for n, ss in acc.items()}
    return {"accuracy": table, "temperature_per_half": [round(t, 3) for t in temperatures]}


def model_report(path: Path, data_root: Path, sizes: Sequence[int]) -> Dict:
    sys.path.insert(0, str(REPO / "tools"))
    sys.path.insert(0, str(HERE))
    import cross_dataset
    from fit_class_prior import column_truth, split_faces, training_prior

    from keras_fer.data import labels as labels_lib
    from keras_fer.data import readers
    from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8
    from keras_fer.inference.predictor import Predictor
    from keras_fer.inference.prior import load_prior

    table = readers.read_ferplus(data_root / "ferplus" / "data", splits=("train", "valid"))
    split, expression = np.asarray(table.split), np.asarray(table.expression)
    ck = cross_dataset.load_tests(data_root)["ckplus48"]
    with Predictor(path, prior="training") as predictor:
        names = list(predictor.class_names)
        prior_file = load_prior(predictor.model_path, names)
        valid = predictor.classify(split_faces(table, "valid"))
        ck_probs = predictor.classify(resize_uint8(ck.faces, ALIGNED_SIZE))
    columns = labels_lib.canonical_columns(names)
    train_prior = training_prior(expression[split == "train"], columns)
    counted, truth = column_truth(expression[split == "valid"], columns)
    valid = valid[counted]
    tau = prior_file.tau if prior_file is not None else 0.0
    report = simulate(valid, truth, train_prior, tau, sizes)
    calibration = fit_bcts(valid, truth)
    calibrated_prior = calibrate(valid, *calibration).mean(axis=0)
    ck_answers = answers(ck_probs, train_prior, tau, calibration, calibrated_prior)
    report["ckplus48_for_the_record"] = {
        m: cross_dataset.score(p, names, ck)["accuracy"] for m, p in ck_answers.items()}
    report["ckplus48_em_mix"] = {
        labels_lib.CANONICAL[c]: round(float(v), 3) for c, v in zip(
            columns, em_prior(calibrate(ck_probs, *calibration), calibrated_prior))}
    report.update(tau=tau, temperature=round(calibration[0], 3),
                  bias=[round(float(b), 3) for b in calibration[1]], classes=names,
                  valid_faces=int(len(truth)))
    return report


def markdown(doc: Dict) -> str:
    lines = ["# Class-mix adaptation (`benchmarks/prior_adaptation.py`)", "",
             "FER+ Valid, label-shifted batches drawn from the half that BCTS was not fitted "
             "on (10 halves x 8 batches): accuracy % of the model's own output (`training`), "
             "the shipped prior divided out (`balanced`, as `keras-fer predict` answers), EM "
             "on the raw output (`em`) and BCTS then EM (`bcts_em`). CK+48: all 981 faces as "
             "one batch, for the record only.", "",
             "| model | batch size | batch mix | training | balanced | em | bcts_em |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for model, rep in doc.items():
        for n, scenarios in rep["accuracy"].items():
            for scenario, row in scenarios.items():
                lines.append(f"| {model} | {n} | {scenario} | "
                             + " | ".join(f"{row[m]:.2f}" for m in METHODS) + " |")
        ck = rep["ckplus48_for_the_record"]
        lines.append(f"| {model} | 981 | CK+48 (for the record) | "
                     + " | ".join(f"{ck[m]:.2f}" for m in METHODS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> Dict:
    from keras_fer import io_atomic
    from keras_fer.data.paths import data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", type=Path, default=None, help="default: $FER_DATA_DIR")
    parser.add_argument("--sizes", default="30,100,800", help="batch sizes, comma-separated")
    parser.add_argument("--out_dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = args.data_dir or data_dir()
    doc = {key: model_report(REPO / "saved_models" / rel, root, sizes) for key, rel in MODELS}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    io_atomic.write_json(args.out_dir / "prior_adaptation.json", doc)
    io_atomic.write_text(args.out_dir / "prior_adaptation.md", markdown(doc))
    print(markdown(doc))
    return doc


if __name__ == "__main__":
    main()
