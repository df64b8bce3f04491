"""Gathers the GPU runs' ``results.json`` into one table, with each paper's number beside ours.

Reads ``benchmarks/results/gpu/<run>/<variant>/results.json`` (copied back from the GPU
machine; see ``tools/README.md`` for the jobs that made them), writes
``benchmarks/results/gpu/summary.json`` and ``summary.md``, and replaces the table between
the ``<!-- gpu-results -->`` markers of ``docs/results.md`` (and the throughput table
between ``<!-- gpu-throughput -->``):

    python tools/gather_results.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gpu"
RESULTS_DOC = REPO / "docs" / "results.md"
MARK_BEGIN, MARK_END = "<!-- gpu-results -->", "<!-- /gpu-results -->"
SPEED_BEGIN, SPEED_END = "<!-- gpu-throughput -->", "<!-- /gpu-throughput -->"

# (method, variant, dataset, protocol) -> the paper's figure (percent). IDEnNet's figures are
# for its 40-layer DenseNet; PAPER_BY_DEPTH has its Table 4/5 figures for 16 and 22 layers.
PAPER = {
    ("idennet", "original", "ckplus48", "ck7"): 98.23,
    ("idennet", "i", "ckplus48", "ck7"): 98.46,
    ("idennet", "f", "ckplus48", "ck7"): 98.42,
    ("idennet", "if", "ckplus48", "ck7"): 98.42,
    ("idennet", "original", "ferplus", "ferplus8"): 80.11,
    ("idennet", "f", "ferplus", "ferplus8"): 82.96,
    ("tfe", "tfe", "ckplus_neutral", "ck8"): 99.31,
    ("tfe", "baseline", "ckplus_neutral", "ck8"): 97.56,
    ("tfe", "tfe", "ferplus", "ferplus8"): 84.3,
    ("idferm", "rml", "ckplus48", "ck7"): 98.35,
    ("idferm", "rml", "ckplus_neutral", "ck8"): 97.76,
    # IF-GAN's CK+ figure is on 6 classes (no neutral, no contempt); ours are on 7.
    ("ifgan", "ifgan", "ckplus48", "ck7"): 97.52,
}
PAPER_BY_DEPTH = {
    ("idennet", "original", "ckplus48", "ck7", 16): 91.19,
    ("idennet", "i", "ckplus48", "ck7", 16): 92.13,
    ("idennet", "f", "ckplus48", "ck7", 16): 92.87,
    ("idennet", "if", "ckplus48", "ck7", 16): 93.46,
    ("idennet", "original", "ckplus48", "ck7", 22): 95.16,
    ("idennet", "i", "ckplus48", "ck7", 22): 96.57,
    ("idennet", "f", "ckplus48", "ck7", 22): 96.49,
    ("idennet", "if", "ckplus48", "ck7", 22): 96.63,
    ("idennet", "original", "ferplus", "ferplus8", 16): 76.37,
    ("idennet", "f", "ferplus", "ferplus8", 16): 78.42,
    ("idennet", "original", "ferplus", "ferplus8", 22): 79.93,
    ("idennet", "f", "ferplus", "ferplus8", 22): 80.67,
}


def paper_figure(doc: Dict, depth: int | None = None) -> float | None:
    """The paper's figure for a results document (its run's depth picks IDEnNet's column)."""
    key = (doc["method"], doc["variant"], doc["dataset"], doc["protocol"])
    if doc["method"] == "idennet" and depth not in (None, 40):
        return PAPER_BY_DEPTH.get(key + (depth,))
    return PAPER.get(key)


# How each run folder was trained (the trainers' config.json has the numbers; this is the
# one-line reading of them for the table).
SETTINGS = {
    "ckplus_idennet_scratch": "depth 40 from scratch: streams 100 epochs (lr 0.1), fine-tune 40 "
                              "(lr 0.01); fusion conv random",
    "ckplus_idennet_ferplus": "depth 40, emotion stream from FER+ then 40 epochs on CK+ "
                              "(lr 0.01), fine-tune 40; fusion conv random",
    "ckplus_idennet_ferplus_pt": "as above, fusion conv starts as a pass-through of the "
                                 "emotion map (the default since)",
    "ferplus_idennet": "depth 40: emotion stream 30 epochs, fine-tune 10; F's identity stream "
                       "on ORL; fusion conv random",
    "tfe_ckplus8": "ResNet12 + DeepID, the paper's settings (200 + 100 epochs, lr 0.16 / 0.01)",
    "ifgan_ckplus": "10 folds, 100 epochs, the paper's loss weights; E is the project's compact "
                    "CNN from scratch (the paper: ImageNet ResNet-101). The paper's 97.52 is on "
                    "6 classes (ours: 7); baseline = the classifier alone, same folds and epochs",
    "idferm_ckplus7": "flagfile budget: ResNet12 perceptual net 40 epochs, DeepID identity net "
                      "100 (Adam), HNG 100, RML net 40 pretraining (Adam 1e-3) + 40 fine-tuning "
                      "(SGD lr 0.01, gradient norm clipped at 5); baseline = the same network, "
                      "folds and epochs on softmax alone. HNG keeps identity in 38.2% of the "
                      "faces it generates from held-out subjects",
    "idferm_ckplus8": "as idferm_ckplus7, on CK+ 8 classes (each labelled sequence's peak frame "
                      "and its neutral first frame); HNG keeps identity in 32.8%",
    "ferplus_idennet_pt": "depth 40, F with the pass-through fusion conv: streams 30 epochs "
                          "(identity on ORL), fine-tune 10",
    "tfe_ferplus": "ResNet18 + DeepID (ORL), 60 + 30 epochs: the paper's 200 + 100 do not fit "
                   "a 10-minute device call",
    "tfe_ckplus7": "ResNet12 + DeepID, the paper's CK+ settings (200 + 100 epochs, lr 0.16 / "
                   "0.01) on 7 classes; the paper reports CK+ on 8 classes only",
    "ckplus_idennet16_scratch": "depth 16 (paper Table 4's 16-layer column), the depth-40 "
                                "scratch recipe: streams 100 epochs, fine-tune 40, fusion conv "
                                "random",
    "idennet_fer2013": "FER2013 private test, original labels (7 classes), the FER+ recipe: "
                       "depth 40, emotion stream 30 epochs, fine-tune 10, F's identity stream "
                       "on ORL, pass-through fusion conv; no paper figure",
    "tfe_fer2013": "FER2013 private test, original labels: ResNet18 + DeepID (ORL), 60 + 30 "
                   "epochs as on FER+; the paper's FER2013 table did not survive in our copy",
    "ckplus_idennet22_scratch": "depth 22 (paper Table 4's 22-layer column), the depth-16 "
                                "scratch recipe",
    "ferplus_tfe_r12": "ResNet12 alone, 60 + 30 epochs (lr 0.1 / 0.001): the FER+ "
                       "pretraining behind pretrained/ferplus_tfe_resnet12.keras",
    "ferplus_idferm": "the RML network on softmax, 30 pretraining (Adam 1e-3) + 10 fine-tuning "
                      "epochs: behind pretrained/ferplus_idferm_rml.keras",
    "ferplus_ifgan": "IF-GAN's classifier E alone, 40 epochs, Adam 1e-3, batch 128: behind "
                     "pretrained/ferplus_ifgan_classifier.keras",
    "tfe_ckplus7_ferplus": "ResNet12 from FER+ (pretrained/), 40 epochs on CK+ at lr 0.01, then "
                           "40 joint / fine-tuning epochs at 0.01; DeepID 200 epochs from scratch",
    "tfe_ckplus8_ferplus": "as tfe_ckplus7_ferplus, on CK+ 8 classes; ran before init_from "
                           "left the destination's head as built: FER+'s 8-class head was copied "
                           "into the CK+ 8 ResNet (same shape, other class order)",
    "idferm_ckplus7_ferplus": "as idferm_ckplus7, with the RML network from FER+ (pretrained/) "
                              "re-trained at Adam 1e-4; HNG keeps identity in 38.3%",
    "idferm_ckplus8_ferplus": "as idferm_ckplus8, with the RML network from FER+ (pretrained/) "
                              "re-trained at Adam 1e-4; HNG keeps identity in 31.7% (DeepID's "
                              "measure); ran before init_from left the head as built: FER+'s "
                              "8-class head was copied (same shape, other class order)",
    "tfe_ckplus7_r18_face": "new backbones (issues 17, 20): emotion = the shipped FER+ ResNet-18, "
                            "identity = dlib's face ResNet fine-tuned at lr 0.001; both variants "
                            "start from the same FER+ weights, 40 epochs at lr 0.01; 10 fixed "
                            "folds x seeds 0-2 (tools/jobs/tfe_r18_face_ckplus7_ckplus8_seeds.txt)",
    "tfe_ckplus8_r18_face": "as tfe_ckplus7_r18_face on CK+ 8 classes; seed 2's folds 8-9, cut "
                            "by a call's deadline, ran in session 14",
    "idferm_ckplus8_r18_face": "as idferm_ckplus7_r18_face_residual on CK+ 8 classes "
                               "(ckplus_neutral): residual HNG, identity weight 1, pixel weight "
                               "1; seeds 0-2 (tools/jobs/r18_face_ckplus8_idferm_hng_stage.txt, "
                               "then r18_face_ckplus8_idferm_seeds.txt: seeds 0-1's HNG in "
                               "session 16, everything else in session 17). Identity kept in "
                               "98.4% (seed 0), 99.0% (seed 1) and 100.0% (seed 2) of the faces "
                               "generated from the held-out subjects",
    "idennet_ckplus7_face_distilled": "face network (issue 17): F's identity stream starts from pretrained/identity_densenet_distilled.keras as of session 8 (distilled once from dlib on FER+ Train, uncentred, 6 CPU epochs; no per-fold distillation; replaced in session 10), then identity-pretrained on the fold's subjects + ORL; emotion stream from FER+; 10 fixed folds x seeds 0-2 (tools/jobs/idennet_face_distilled_ckplus7_seeds.txt); IF was killed at the call's deadline in its last fine-tuning epochs",
    "ifgan_ckplus7_face": "face network (issue 17), E from FER+ as ifgan_ckplus_ferplus; 10 fixed folds x seeds 0-1 (seed 2 did not fit the session's device time; tools/jobs/idferm_ifgan_face_ckplus7_seed0.txt, idferm_rml_s0_ifgan_s1_face_ckplus7.txt); generated faces of different subjects with the same expression are at 0.25x their inputs' face-network distance",
    "idferm_ckplus7_face": "face network (issue 17): the softmax baseline of seed 0 only; the RML jobs were killed at the call's deadline after the HNG stage (each fold's hng.json: identity preserved in 0.1% of generated faces, see benchmarks/results/identity.json)",
    "idennet_ckplus7_r18_face": "new backbones (issues 17, 20): emotion stream = the shipped FER+ ResNet-18 (stages 1-3, stage 4 as the fusion block, pass-through fusion conv), F's and IF's identity stream from pretrained/identity_densenet_distilled.keras as of session 8 (uncentred targets, 6 CPU epochs, ORL 79.56; the file was replaced in session 10 by the centred 60-epoch stream, ORL 90.83: git show 4c9e6ae:pretrained/identity_densenet_distilled.keras); 10 fixed folds; Original and IF x seeds 0-2, F x seed 0 (tools/jobs/r18_face_ckplus7_idennet_seeds.txt with --variants=original,f for seed 0, session 9; distill_centred_long_and_idennet_if_r18_s0.txt for IF seed 0 and idennet_r18_face_ckplus7_if_original_seeds12.txt for seeds 1-2, session 10). F equals Original on every fold: the emotion stream ends its pretraining at train loss 0.006, F's fine-tuning starts with the identity half of the fusion conv at zero and stays there (train loss 0.004-0.01, id_loss 0)",
    "ifgan_ckplus7_r18_face": "new backbones (issues 17, 20): E = the shipped FER+ ResNet-18 (classifier_backbone=resnet18_std), baseline = that E alone, same folds and 100 epochs; 10 fixed folds x seeds 0-2 (tools/jobs/r18_face_ckplus7_ifgan_seeds.txt: seed 0 in two calls of session 9, seed 1's baseline in session 11, its IF-GAN in session 12, seed 2 in one call of session 13); generated faces of different subjects with the same expression are at 0.22x (seed 0), 0.25x (seed 1) and 0.25x (seed 2) their inputs' face-network distance",
    "idferm_ckplus7_r18_face": "new backbones (issues 17, 20): the RML network's trunk = the shipped FER+ ResNet-18; seeds 0-2 (tools/jobs/r18_face_ckplus7_idferm_hng_stage.txt then r18_face_ckplus7_idferm_seeds.txt, two calls per seed: seed 0 in session 11, seed 1 in session 12, seed 2 in session 13). The HNG's perceptual loss on dlib's face network, identity weight 10, each fold's HNG started from the generator pretrained as a face autoencoder on FER+ Train (hng_init): identity kept in 51.5% (seed 0), 42.9% (seed 1) and 49.2% (seed 2) of the faces generated from the held-out subjects (67.6% on the whole frame for seed 0; session 9's setting kept 0.3%)",
    "idferm_ckplus7_r18_face_residual": "as idferm_ckplus7_r18_face with the residual HNG (the generator outputs its input plus a change its decoder draws), identity weight 1, pixel weight 1, trained from scratch per fold for 100 epochs; seeds 0-2 in session 14 (tools/jobs/r18_face_ckplus7_idferm_residual_hng_stage.txt then r18_face_ckplus7_idferm_residual_seeds.txt); baseline = idferm_ckplus7_r18_face's softmax baseline (same flags, folds and seeds). Identity kept in 98.9% (seed 0), 98.7% (seed 1) and 99.2% (seed 2) of the faces generated from the held-out subjects",
    "expression_ckplus7_r18_shipped": "the plain expression trainer (issue 20's CK+ 7 goal): the "
                                      "shipped FER+ ResNet-18 fine-tuned per fold (AdamW 2e-4, 40 "
                                      "epochs, EMA), epoch chosen on an inner split of 10% of the "
                                      "training subjects (ties on the validation loss); the "
                                      "methods' 10 fixed folds x seeds 0-2, session 15",
    "expression_ckplus7_r18_shipped_all": "as expression_ckplus7_r18_shipped on every training "
                                          "subject (--val_fraction=0, the last of the 40 "
                                          "epochs scored); 10 fixed folds x seeds 0-2, "
                                          "session 16 (tools/jobs/"
                                          "expression_ckplus7_r18_shipped_all_seeds.txt); "
                                          "the three seeds' ensemble (declared before the "
                                          "run): 97.77 ± 2.59",
    "expression_ckplus8_r18_shipped_all": "as expression_ckplus7_r18_shipped_all on CK+ 8 "
                                          "classes (ckplus_neutral), the methods' CK+ 8 folds "
                                          "x seeds 0-2, all three in one call of session 17 "
                                          "(tools/jobs/"
                                          "expression_ckplus8_r18_shipped_all_seeds.txt; "
                                          "seed 0 again: 96.14, session 16's run of the same "
                                          "lines 95.98); paired with TFE-JL's ResNet-18 "
                                          "baseline; the three seeds' ensemble (declared "
                                          "before the run): 96.63 ± 1.97",
    "expression_ferplus_resnet18_e100_seeds": "the shipped model's recipe "
                                              "(expression_ferplus_resnet18_e100) again at seeds "
                                              "0-2, session 16; Valid 83.63 / 83.80 / 83.69, "
                                              "the three seeds' ensemble Valid 84.28, Test 83.47",
    "expression_ferplus_edge_distill_shipped_t4": "the edge model distilled from the shipped "
                                                  "100-epoch FER+ ResNet-18 for its full 60 "
                                                  "epochs at T 4 / KD weight 0.7; epoch chosen "
                                                  "on Valid, session 15",
    "expression_ferplus_edge_distill_shipped_t2": "as expression_ferplus_edge_distill_shipped_t4 "
                                                  "at T 2 / KD weight 0.5 (the better on Valid)",
    "idennet_ckplus8_r18_face": "as idennet_ckplus7_r18_face on CK+ 8 classes (ckplus_neutral), "
                                "F's and IF's identity stream from today's "
                                "pretrained/identity_densenet_distilled.keras (centred, 60 "
                                "epochs); Original and IF x 10 fixed folds x seeds 0-2, one job "
                                "per fold, seed and variant, one seed a call, session 18 "
                                "(tools/jobs/r18_face_ckplus8_idennet_seeds.txt); F not run (it "
                                "equals Original on every CK+ 7 fold on this backbone)",
    "tfe_ferplus_r18_face": "new backbones on FER+ (issue 17 part 4): as tfe_ckplus7_r18_face, "
                            "both variants fine-tuned from the shipped FER+ ResNet-18 for 10 "
                            "epochs at lr 0.001 (FER+ Train, no ORL), the last epoch scored on "
                            "Test; seeds 0-2 in one call of session 18 "
                            "(tools/jobs/tfe_r18_face_ferplus_seeds.txt)",
    "ifgan_ferplus_r18_face": "new backbones on FER+ (issue 17 part 4): E = the shipped FER+ "
                              "ResNet-18 pair classifier, 5 epochs, batch 32, lr 1e-4; baseline "
                              "= that E alone, same epochs, seeds 0-2, session 18 (tools/jobs/"
                              "r18_face_ferplus_ifgan_seeds.txt). IF-GAN seeds 0-2 are session "
                              "20's rerun with batch-norm recalibration after the GAN stage, "
                              "three jobs side by side in one call: E(x, G(x)) on 8,192 "
                              "training faces 86.5 / 83.8 / 82.2 before it and 90.0 / 88.7 / "
                              "90.3 after (recalibration.json). Session 18's IF-GAN rows, scored "
                              "with the moving averages, were 79.80 / 34.36 / 74.44: G's "
                              "inference-mode faces were near-identical averages (seed 0) and "
                              "textured blanks (seed 1)",
    "ifgan_ckplus8_r18_face": "as ifgan_ckplus7_r18_face on CK+ 8 classes (ckplus_neutral), "
                              "with batch-norm recalibration after the GAN stage (session 18's "
                              "default); the 30 baseline folds in one call, IF-GAN seed 0 in two "
                              "(cut at the first call's deadline, resumed from the stage "
                              "checkpoints), session 19 (tools/jobs/"
                              "r18_face_ckplus8_ifgan_seeds.txt); IF-GAN seeds 1 and 2 one call "
                              "each, session 20",
    "idennet_ferplus_r18_face": "new backbones on FER+ (issue 17 part 4): as "
                                "idennet_ckplus7_r18_face, the emotion stream from the shipped "
                                "FER+ ResNet-18, 10 epochs of stage 1 and 20 of stage 2; "
                                "Original x seeds 0-2, session 18 "
                                "(tools/jobs/r18_face_ferplus_idennet_seeds.txt); F x seeds 0-2 "
                                "with --variants=f, session 19 (cut by its first call's deadline, "
                                "resumed from the stage checkpoints in the next)",
    "ifgan_ckplus_ferplus": "as ifgan_ckplus, with E from FER+ (pretrained/); baseline = E alone "
                            "from the same file, same folds and epochs",
}


# Each method's own baseline: the variant its gain is measured against, fold by fold.
BASELINE = {"tfe": "baseline", "idferm": "baseline", "ifgan": "baseline", "idennet": "original"}
# Runs that change only the method's own part and so share the baseline another run trained
# (same flagfile settings for the baseline variant, same folds and seeds): run -> that run, or
# (run, variant) for a run whose method has no baseline of its own (the plain expression
# trainer, paired with the softmax baseline every CK+ 7 method run shares).
BASELINE_RUN = {
    "idferm_ckplus7_r18_face_residual": "idferm_ckplus7_r18_face",
    "expression_ckplus7_r18_shipped": ("idferm_ckplus7_r18_face", "baseline"),
    "expression_ckplus7_r18_shipped_all": ("idferm_ckplus7_r18_face", "baseline"),
    "expression_ckplus8_r18_shipped_all": ("tfe_ckplus8_r18_face", "baseline"),
}


def collect(root: Path = RESULTS) -> List[Dict]:
    """One row per ``(run, variant)`` under ``root``.

    A variant trained with several ``--seed`` values over the same folds (``--fold_seed``)
    has one folder per seed (``<run>/<variant>_s<seed>/results.json``, the seed read from its
    ``config.json``); its row pools the fold accuracies of every seed (``seeds`` lists them).
    Every variant with its method's baseline (:data:`BASELINE`) in the same run, or in the run
    :data:`BASELINE_RUN` names for it, also gets the paired per-fold difference
    (:func:`paired_difference`).
    """
    groups: Dict[tuple, List] = {}
    for path in sorted(root.glob("*/*/results.json")):
        doc = json.loads(path.read_text())
        config_path = path.parent / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        key = (path.parent.parent.name, doc["variant"])
        groups.setdefault(key, []).append((config.get("seed", 0), config.get("depth"), doc))
    rows = []
    for (run, variant), entries in groups.items():
        seed, depth, doc = entries[0]
        accuracies = [f["accuracy"] for _, _, d in entries for f in d["folds"]]
        mean = float(np.mean(accuracies))
        paper = paper_figure(doc, depth)
        row = {
            "run": run,
            "method": doc["method"],
            "variant": variant,
            "dataset": doc["dataset"],
            "protocol": doc["protocol"],
            "mean_accuracy": round(mean, 2),
            "std_accuracy": round(float(np.std(accuracies)), 2),
            "folds": min(len(d["folds"]) for _, _, d in entries),
            "fold_runs": len(accuracies),
            "folds_expected": doc.get("folds_expected", len(doc["folds"])),
            "seeds": sorted(s for s, _, _ in entries),
            "paper": paper,
            "gap_to_paper": None if paper is None else round(mean - paper, 2),
            "settings": SETTINGS.get(run, ""),
            "paired_difference": None,
            "p_value": None,
        }
        base_run, baseline = BASELINE_RUN.get(run, run), BASELINE.get(doc["method"])
        if isinstance(base_run, tuple):
            base_run, baseline = base_run
        if variant != baseline and (base_run, baseline) in groups:
            row.update(paired_difference(entries, groups[(base_run, baseline)]))
            if base_run != run:
                row["baseline_run"] = base_run
        rows.append(row)
    order = {"original": 0, "i": 1, "f": 2, "if": 3, "baseline": 0, "tfe": 1, "ifgan": 1}
    rows.sort(key=lambda r: (r["method"], r["dataset"], r["run"], order.get(r["variant"], 9)))
    return rows


def paired_difference(method: List, baseline: List) -> Dict:
    """Method minus baseline on the (seed, fold) pairs both trained, and a Wilcoxon test.

    Both sides must have trained on the same folds (same fold seed, same fold index): each
    pair shares its test subjects, so the difference removes the folds' difficulty. The test
    is scipy's two-sided Wilcoxon signed-rank test on the pairs (ties at zero dropped, its
    default); with fewer than 6 non-zero differences no p-value below 0.05 is possible and
    ``p_value`` is still reported.

    Returns:
        ``{"paired_difference": {"mean", "std", "n", "wins", "losses"}, "p_value", "test"}``
        (accuracy points), or ``{}`` when the two share no (seed, fold) pair.
    """
    from scipy import stats

    def by_pair(entries):
        return {(seed, f["fold"], tuple(f.get("test_subjects", ()))): f["accuracy"]
                for seed, _, doc in entries for f in doc["folds"]}

    ours, theirs = by_pair(method), by_pair(baseline)
    common = sorted(set(ours) & set(theirs))
    if not common:
        return {}
    diff = np.array([ours[k] - theirs[k] for k in common])
    nonzero = diff[diff != 0]
    p_value = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
    return {"paired_difference": {"mean": round(float(diff.mean()), 2),
                                  "std": round(float(diff.std()), 2), "n": len(common),
                                  "wins": int((diff > 0).sum()), "losses": int((diff < 0).sum())},
            "p_value": round(p_value, 4), "test": "wilcoxon_signed_rank"}


def markdown(rows: List[Dict]) -> str:
    """The results table: ours (mean ± std over folds) beside the paper's figure."""
    lines = [
        "| method / variant | data (protocol) | ours, % | folds x seeds | vs own baseline, paired "
        "(p) | paper, % | ours - paper | run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        paper = "-" if r["paper"] is None else f"{r['paper']:.2f}"
        gap = "-" if r["gap_to_paper"] is None else f"{r['gap_to_paper']:+.2f}"
        folds = f"{r['folds']}/{r['folds_expected']}"
        if len(r.get("seeds", [0])) > 1:
            folds += f" x {len(r['seeds'])}"
            if r["fold_runs"] != r["folds"] * len(r["seeds"]):
                folds += f" ({r['fold_runs']} runs)"
        pair = r.get("paired_difference")
        vs = ("-" if not pair else f"{pair['mean']:+.2f} ± {pair['std']:.2f} "
              f"({pair['wins']}/{pair['losses']} of {pair['n']}, p {r['p_value']:.3f})")
        if pair and r.get("baseline_run"):
            vs += f", baseline of `{r['baseline_run']}`"
        lines.append(f"| {r['method']} / {r['variant']} | {r['dataset']} ({r['protocol']}) | "
                     f"{r['mean_accuracy']:.2f} ± {r['std_accuracy']:.2f} | {folds} | {vs} | "
                     f"{paper} | {gap} | `{r['run']}` |")
    lines.append("")
    lines.append("Paired: the variant minus its method's baseline on the same (seed, fold) pairs, "
                 "mean ± std, pairs won/lost of all, and the two-sided Wilcoxon signed-rank "
                 "test's p-value.")
    lines.append("")
    lines += [f"- `{run}`: {text}" for run, text in SETTINGS.items()
              if any(r["run"] == run for r in rows)]
    return "\n".join(lines) + "\n"


def throughput(root: Path = RESULTS) -> List[Dict]:
    """One row per training stage of fold 0 that wrote ``timing.json`` (copied to
    ``<run>/<variant>/timing/<stage>.json``), with the run's mean seconds per fold."""
    rows = []
    for timing_dir in sorted(root.glob("*/*/timing")):
        variant_dir = timing_dir.parent
        doc = json.loads((variant_dir / "results.json").read_text())
        fold_seconds = [f["train_seconds"] for f in doc["folds"] if "train_seconds" in f]
        rows += [_stage_row(variant_dir, path, fold_seconds)
                 for path in sorted(timing_dir.glob("*.json"))]
    return rows


def _stage_row(variant_dir: Path, path: Path, fold_seconds: List[float]) -> Dict:
    t = json.loads(path.read_text())
    return {
        "run": variant_dir.parent.name,
        "variant": variant_dir.name,
        "stage": path.stem,
        "epochs": t["epochs"],
        "median_epoch_seconds": round(t["median_epoch_seconds"], 3),
        "first_epoch_excess_seconds": round(t["first_epoch_excess_seconds"], 1),
        "examples_per_second": (None if t["examples_per_second"] is None
                                else round(t["examples_per_second"])),
        "mean_fold_seconds": (round(sum(fold_seconds) / len(fold_seconds))
                              if fold_seconds else None),
    }


def throughput_markdown(rows: List[Dict]) -> str:
    lines = [
        "| run / variant | stage | epochs | s / epoch | compile etc., s | examples / s | "
        "s / fold |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rate = "-" if r["examples_per_second"] is None else f"{r['examples_per_second']:,}"
        fold = "-" if r["mean_fold_seconds"] is None else str(r["mean_fold_seconds"])
        lines.append(f"| `{r['run']}` / {r['variant']} | {r['stage']} | {r['epochs']} | "
                     f"{r['median_epoch_seconds']:.2f} | {r['first_epoch_excess_seconds']:.0f} | "
                     f"{rate} | {fold} |")
    return "\n".join(lines) + "\n"


def update_doc(table: str, doc: Path = RESULTS_DOC, begin: str = MARK_BEGIN,
               end: str = MARK_END) -> bool:
    """Replaces the text between the markers; ``False`` when the document has no markers."""
    text = doc.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{table}{end}{tail}")
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(RESULTS))
    parser.add_argument("--no_readme", action="store_true", help="do not touch docs/results.md")
    args = parser.parse_args(argv)
    root = Path(args.root)
    rows = collect(root)
    if not rows:
        raise SystemExit(f"No <run>/<variant>/results.json under {root}")
    (root / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    (root / "summary.md").write_text(table)
    print(table)
    if not args.no_readme and not update_doc(table):
        print(f"{RESULTS_DOC} has no {MARK_BEGIN} ... {MARK_END} markers: table not inserted")
    speed = throughput(root)
    if speed:
        (root / "throughput.json").write_text(json.dumps(speed, indent=1) + "\n")
        speed_table = throughput_markdown(speed)
        (root / "throughput.md").write_text(speed_table)
        print(speed_table)
        if not args.no_readme:
            update_doc(speed_table, begin=SPEED_BEGIN, end=SPEED_END)


if __name__ == "__main__":
    main()
