"""The GPU-run helpers: packing results for the trip back, one GPU per job, the import of
what came back into results/gpu, and the throughput table gathered from the stages' timing.json."""

import json
import types
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from script_loader import load_script


def _load(name):
    return load_script(f"tools/{name}.py")


gpu_run = _load("gpu_run")
gather_results = _load("gather_results")
import_runs = _load("import_runs")


def test_pack_thins_grids_and_splits_into_parts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grids = Path("runs/m/fold_0/hng/grids")
    grids.mkdir(parents=True)
    for epoch in range(1, 101):
        (grids / f"epoch_{epoch:03d}.png").write_bytes(b"p" * 10)
    Path("runs/m/results.json").write_text("{}")
    Path("runs/m/fold_0/big.csv").write_bytes(b"c" * 3000)
    Path("runs/m/fold_0/other.csv").write_bytes(b"c" * 3000)
    Path("runs/m/fold_0/final.weights.h5").write_bytes(b"w" * 10)  # not wanted
    Path("runs/m/fold_0/inference.keras").write_bytes(b"k" * 10)   # wanted by --keep
    parts, left_out = gpu_run._pack(["runs"], tmp_path / "out.tar.gz",
                                    {"fold_0/inference.keras"}, part_bytes=4000)
    assert left_out == []
    assert [p.name for p in parts] == ["out.tar.gz", "out.tar.gz.1"]
    names = sorted(n for p in parts for n in tarfile.open(p).getnames())
    kept = sorted(n.rsplit("_", 1)[1] for n in names if "/grids/" in n)
    assert kept == ["001.png", "025.png", "050.png", "075.png", "100.png"]
    assert "runs/m/fold_0/inference.keras" in names and "runs/m/results.json" in names
    assert not any(n.endswith(".h5") for n in names)
    # No part holds more than part_bytes of files unless one file alone is larger.
    for part in parts:
        assert sum(m.size for m in tarfile.open(part).getmembers()) <= 4000


def test_pack_leaves_out_kept_models_before_results(tmp_path, monkeypatch):
    """Past the return limit, the kept npz are what stays behind, never a fold's results."""
    monkeypatch.chdir(tmp_path)
    for fold in range(4):
        folder = Path(f"runs/m/fold_{fold}")
        (folder / "hng" / "grids").mkdir(parents=True)
        (folder / "hng_references.npz").write_bytes(b"n" * 3000)
        (folder / "hng" / "grids" / "epoch_001.png").write_bytes(b"g" * 500)
        (folder / "hng.json").write_text("{}")
    parts, left_out = gpu_run._pack(["runs"], tmp_path / "out.tar.gz", {"hng_references.npz"},
                                    part_bytes=4000, total_bytes=8100)
    names = [n for p in parts for n in tarfile.open(p).getnames()]
    assert sum(n.endswith("hng.json") for n in names) == 4
    assert sum(n.endswith(".png") for n in names) == 4
    assert sorted(map(str, left_out)) == [f"runs/m/fold_{k}/hng_references.npz" for k in (2, 3)]
    assert sum(m.size for p in parts for m in tarfile.open(p).getmembers()) <= 8100


def test_jobs_are_spread_over_gpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    probe = "import os, sys; open(sys.argv[1], 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    Path("probe.py").write_text(probe)
    monkeypatch.syspath_prepend(str(tmp_path))
    jobs = [(i, f"probe {tmp_path / f'gpu{i}.txt'}") for i in range(4)]
    done = gpu_run._run_batch(jobs, parallel=4, log_dir=log_dir, gpus=2)
    assert sorted(rc for _, rc, _, _ in done) == [0, 0, 0, 0]
    seen = sorted((tmp_path / f"gpu{i}.txt").read_text() for i in range(4))
    assert seen == ["0", "0", "1", "1"]


def test_a_job_out_of_gpu_memory_is_retried_once_fewer_jobs_run(tmp_path, monkeypatch):
    """Another failure is retried at once; a GPU out-of-memory one (its log says so) waits
    until at most half of --parallel jobs run."""
    monkeypatch.chdir(tmp_path)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    Path("probe2.py").write_text("""
import pathlib, sys, time
name, root = sys.argv[1], pathlib.Path(sys.argv[2])
mark = root / f"{name}.tries"
n = int(mark.read_text()) if mark.exists() else 0
mark.write_text(str(n + 1))
(root / f"{name}.start{n}").write_text(repr(time.time()))
if n == 0 and name == "oom":
    print("jax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED: CUDA_ERROR_OUT_OF_MEMORY")
    sys.exit(1)
if n == 0 and name == "flaky":
    sys.exit(3)
if name.startswith("sleep"):
    time.sleep(4)
(root / f"{name}.end").write_text(repr(time.time()))
""")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ["oom", "flaky", "sleep1", "sleep2"]
    done = gpu_run._run_batch([(i, f"probe2 {n} {tmp_path}") for i, n in enumerate(names)],
                              parallel=4, log_dir=log_dir)
    assert sorted(rc for _, rc, _, _ in done) == [0, 0, 0, 0]
    read = lambda name: float((tmp_path / name).read_text())  # noqa: E731
    sleeps_end = min(read("sleep1.end"), read("sleep2.end"))
    assert read("flaky.start1") < sleeps_end <= read("oom.start1")
    assert sorted(p.name for p in log_dir.glob("*.try1.log")) == ["job000.try1.log",
                                                                   "job001.try1.log"]


def test_pilot_runs_one_job_of_a_flagfile_and_variant_until_its_first_epoch_ends(
        tmp_path, monkeypatch):
    """With pilot, the rest of a compile group (same command but --fold, --seed, --model_dir)
    starts once its first job's log begins a second epoch, or once that job has exited; other
    groups start at once."""
    monkeypatch.chdir(tmp_path)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    # A stale log of an earlier call under the pilot's name must not release its group.
    (log_dir / "job000.log").write_text("Epoch 1/3\nEpoch 2/3\n")
    Path("probe3.py").write_text("""
import pathlib, sys, time
root = pathlib.Path(sys.argv[1])
name = next(a for a in sys.argv if a.startswith("--model_dir=")).split("/")[-1]
(root / f"{name}.start").write_text(repr(time.time()))
if name == "c0":  # fails before its first epoch
    time.sleep(1.5)
    sys.exit(4)
slow = name in ("a0", "b0")
print("Epoch 1/3", flush=True)
time.sleep(2.5 if slow else 0.1)
(root / f"{name}.epoch1").write_text(repr(time.time()))
print("Epoch 2/3", flush=True)
time.sleep(1.5 if slow else 0.1)
""")
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = [f"probe3 {tmp_path} --flag={flag} --fold={k} --seed={s} --model_dir=runs/{name}"
             for name, flag, k, s in [("a0", "a", 0, 0), ("a1", "a", 1, 0), ("a2", "a", 0, 1),
                                      ("b0", "b", 0, 0), ("c0", "c", 0, 0), ("c1", "c", 1, 0)]]
    assert gpu_run._group(lines[0]) == gpu_run._group(lines[2]) != gpu_run._group(lines[3])
    done = gpu_run._run_batch(list(enumerate(lines)), parallel=6, log_dir=log_dir,
                              deadline=time.time() + 40, retries=0, pilot=True)
    assert sorted(rc for _, rc, _, _ in done) == [0, 0, 0, 0, 0, 4]
    read = lambda name: float((tmp_path / name).read_text())  # noqa: E731
    # a1 and a2 (a0's group) wait for a0's first epoch; b0 (another --flag) starts with a0.
    assert read("a0.epoch1") <= min(read("a1.start"), read("a2.start"))
    assert read("b0.start") < read("a0.epoch1")
    # c0 failed before any epoch: the rest of its group starts when it has exited.
    assert read("c1.start") >= read("c0.start") + 1.5


def test_throughput_rows_from_timing_files(tmp_path):
    variant = tmp_path / "run_a" / "rml"
    (variant / "timing").mkdir(parents=True)
    (variant / "results.json").write_text(json.dumps(
        {"folds": [{"train_seconds": 100.0}, {"train_seconds": 300.0}]}))
    (variant / "timing" / "hng.json").write_text(json.dumps({
        "backend": "jax", "epochs": 3, "epoch_seconds": [5.0, 1.0, 1.0],
        "median_epoch_seconds": 1.0, "first_epoch_excess_seconds": 4.0,
        "examples_per_epoch": 885, "examples_per_second": 885.0}))
    (row,) = gather_results.throughput(tmp_path)
    assert row == {"run": "run_a", "variant": "rml", "stage": "hng", "epochs": 3,
                   "median_epoch_seconds": 1.0, "first_epoch_excess_seconds": 4.0,
                   "examples_per_second": 885, "mean_fold_seconds": 200}
    table = gather_results.throughput_markdown([row])
    assert "| `run_a` / rml | hng | 3 | 1.00 | 4 | 885 | 200 |" in table


def test_import_keeps_results_plots_timing_and_hng_reports_only(tmp_path):
    run = tmp_path / "runs" / "idferm_x"
    for variant in ("rml", "baseline"):
        (run / variant / "fold_0" / "finetune").mkdir(parents=True)
        (run / variant / "results.json").write_text(json.dumps({"variant": variant}))
        (run / variant / "config.json").write_text("{}")
        (run / variant / "confusion_matrix.png").write_bytes(b"png")
        (run / variant / "fold_0" / "finetune" / "timing.json").write_text('{"epochs": 2}')
        (run / variant / "fold_0" / "inference.keras").write_bytes(b"weights")
        (run / variant / "fold_0" / "finetune" / "history.csv").write_text("epoch\n")
    (run / "rml" / "fold_3").mkdir()
    (run / "rml" / "fold_3" / "hng.json").write_text('{"identity_preserved_percent": 40}')
    grids = run / "rml" / "fold_0" / "hng" / "grids"
    grids.mkdir(parents=True)
    for epoch in (1, 25, 50):
        (grids / f"epoch_{epoch:03d}.png").write_bytes(b"%d" % epoch)
    dest = tmp_path / "results"
    (dest / "idferm_x" / "rml").mkdir(parents=True)
    (dest / "idferm_x" / "rml" / "stale.json").write_text("{}")  # an older import: replaced

    written = import_runs.import_run(run, dest)

    assert sorted(p.name for p in written) == ["baseline", "rml"]
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [
        "idferm_x/baseline/config.json", "idferm_x/baseline/confusion_matrix.png",
        "idferm_x/baseline/results.json", "idferm_x/baseline/timing/finetune.json",
        "idferm_x/rml/config.json", "idferm_x/rml/confusion_matrix.png",
        "idferm_x/rml/hng_fold3.json", "idferm_x/rml/hng_grid_fold0_epoch50.png",
        "idferm_x/rml/results.json", "idferm_x/rml/timing/finetune.json",
    ]
    assert (dest / "idferm_x/rml/hng_grid_fold0_epoch50.png").read_bytes() == b"50"


def test_import_hng_probe_keeps_config_hng_reports_faces_and_the_last_grid(tmp_path):
    run = tmp_path / "runs" / "idferm_hng_probe_x"
    for k in (0, 1):
        (run / f"fold_{k}" / "hng" / "grids").mkdir(parents=True)
        (run / f"fold_{k}" / "hng.json").write_text(json.dumps({"fold": k}))
        (run / f"fold_{k}" / "hng_test_faces.npz").write_bytes(b"faces%d" % k)
        (run / f"fold_{k}" / "hng_references.npz").write_bytes(b"refs")
        (run / f"fold_{k}" / "hng" / "latest.weights.h5").write_bytes(b"w")
    for epoch in (25, 100):
        (run / "fold_0" / "hng" / "grids" / f"epoch_{epoch:03d}.png").write_bytes(b"%d" % epoch)
    (run / "config.json").write_text('{"extra": {}}')
    dest = tmp_path / "results" / "idferm_hng_probe" / "w10"
    import_runs.main([f"--runs={tmp_path / 'runs'}", f"--dest={tmp_path / 'results'}",
                      "--hng_probe=w10", "idferm_hng_probe_x"])
    assert sorted(p.name for p in dest.iterdir()) == [
        "config.json", "hng_fold0.json", "hng_fold1.json", "hng_grid_fold0_epoch100.png",
        "hng_test_faces_fold0.npz", "hng_test_faces_fold1.npz"]
    assert (dest / "hng_test_faces_fold1.npz").read_bytes() == b"faces1"
    with pytest.raises(FileNotFoundError, match="stop_after='hng'"):
        import_runs.import_hng_probe(tmp_path / "runs", tmp_path / "elsewhere")


def test_import_refuses_a_run_that_was_not_aggregated(tmp_path):
    (tmp_path / "runs" / "r" / "v" / "fold_0").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="aggregate_only"):
        import_runs.import_run(tmp_path / "runs" / "r", tmp_path / "results")


def test_paper_figure_follows_the_idennet_depth():
    doc = {"method": "idennet", "variant": "if", "dataset": "ckplus48", "protocol": "ck7"}
    assert gather_results.paper_figure(doc, 40) == 98.42  # Table 4, 40 layers
    assert gather_results.paper_figure(doc, None) == 98.42
    assert gather_results.paper_figure(doc, 16) == 93.46  # Table 4, 16 layers
    assert gather_results.paper_figure(doc, 22) == 96.63
    assert gather_results.paper_figure(dict(doc, variant="f", dataset="ferplus",
                                            protocol="ferplus8"), 16) == 78.42  # Table 5
    assert gather_results.paper_figure(doc, 12) is None  # no paper column: no figure
    tfe = {"method": "tfe", "variant": "tfe", "dataset": "ckplus_neutral", "protocol": "ck8"}
    assert gather_results.paper_figure(tfe, 12) == 99.31  # depth picks IDEnNet's column only


def test_fer2013_pack_keeps_test_faces_lossless_and_jpegs_training_faces(
        tmp_path, fer2013_recovered_csv):
    from keras_fer.data import experiments

    make_pack = _load("make_pack")
    root = fer2013_recovered_csv.parents[1]
    path = make_pack.make_pack("fer2013", tmp_path, data_dir=str(root), limit=40, use_orl=False)
    assert path == tmp_path / "fer2013_fer2013_limit40_noorl.npz"
    packed = experiments.load_experiment("fer2013", tmp_path, limit=40, use_orl=False)
    direct = experiments.load_experiment("fer2013", root, limit=40, use_orl=False)
    train, valid, test = direct.fixed_split
    for got, want in zip(packed.fixed_split, direct.fixed_split):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(packed.labels, direct.labels)
    # PrivateTest and PublicTest rows: the very pixels a direct read gives.
    np.testing.assert_array_equal(packed.faces[test], direct.faces[test])
    np.testing.assert_array_equal(packed.faces[valid], direct.faces[valid])
    # Training rows went through JPEG (quality 90): close, not equal.
    diff = np.abs(packed.faces[train].astype(int) - direct.faces[train].astype(int))
    assert 0 < diff.mean() < 4
    with pytest.raises(ValueError, match="1..100"):
        make_pack.make_pack("fer2013", tmp_path, data_dir=str(root), jpeg_quality=0)


def _seeded_run(root, run, folder, method, variant, seed, accuracies):
    out = root / run / folder
    out.mkdir(parents=True)
    folds = [{"fold": k, "accuracy": a, "test_subjects": [k]} for k, a in enumerate(accuracies)]
    (out / "results.json").write_text(json.dumps({
        "method": method, "variant": variant, "dataset": "ckplus48", "protocol": "ck7",
        "mean_accuracy": float(np.mean(accuracies)), "std_accuracy": float(np.std(accuracies)),
        "folds": folds, "folds_expected": len(folds)}))
    (out / "config.json").write_text(json.dumps({"seed": seed, "fold_seed": 0, "depth": 18}))


def test_seeds_pool_and_the_paired_difference_has_golden_values(tmp_path):
    base = {0: [90.0, 80.0, 70.0], 1: [92.0, 81.0, 70.0]}
    ours = {0: [91.0, 83.0, 70.0], 1: [95.0, 80.0, 74.0]}
    for seed in (0, 1):
        _seeded_run(tmp_path, "r", f"baseline_s{seed}", "tfe", "baseline", seed, base[seed])
        _seeded_run(tmp_path, "r", f"tfe_s{seed}", "tfe", "tfe", seed, ours[seed])
    rows = {r["variant"]: r for r in gather_results.collect(tmp_path)}
    assert rows["tfe"]["seeds"] == [0, 1] and rows["tfe"]["folds"] == 3
    pooled = ours[0] + ours[1]
    assert rows["tfe"]["mean_accuracy"] == round(np.mean(pooled), 2)
    assert rows["tfe"]["std_accuracy"] == round(np.std(pooled), 2)
    diff = np.array(pooled) - np.array(base[0] + base[1])  # 1, 3, 0, 3, -1, 4
    pair = rows["tfe"]["paired_difference"]
    assert pair == {"mean": round(diff.mean(), 2), "std": round(diff.std(), 2), "n": 6,
                    "wins": 4, "losses": 1}
    # Wilcoxon on the 5 non-zero differences 1, 3, 3, -1, 4: ranks 1.5, 3.5, 3.5, 1.5, 5,
    # negative sum 1.5; scipy's exact/normal p for this sample:
    from scipy import stats
    assert rows["tfe"]["p_value"] == round(float(stats.wilcoxon([1, 3, 3, -1, 4]).pvalue), 4)
    assert 0.05 < rows["tfe"]["p_value"] < 0.5
    assert rows["baseline"]["paired_difference"] is None
    table = gather_results.markdown(list(rows.values()))
    assert "3/3 x 2" in table and f"{diff.mean():+.2f}" in table and "4/1 of 6" in table


def test_a_run_pairs_with_the_baseline_another_run_trained(tmp_path, monkeypatch):
    monkeypatch.setattr(gather_results, "BASELINE_RUN", {"r_residual": "r"})
    _seeded_run(tmp_path, "r", "baseline_s0", "idferm", "baseline", 0, [90.0, 80.0, 70.0])
    _seeded_run(tmp_path, "r", "rml_s0", "idferm", "rml", 0, [89.0, 80.0, 71.0])
    _seeded_run(tmp_path, "r_residual", "rml_s0", "idferm", "rml", 0, [92.0, 81.0, 70.0])
    _seeded_run(tmp_path, "other", "rml_s0", "idferm", "rml", 0, [92.0, 81.0, 70.0])
    rows = {r["run"] + "/" + r["variant"]: r for r in gather_results.collect(tmp_path)}
    assert rows["r_residual/rml"]["paired_difference"] == {
        "mean": 1.0, "std": round(float(np.std([2.0, 1.0, 0.0])), 2), "n": 3, "wins": 2,
        "losses": 0}
    assert rows["r_residual/rml"]["baseline_run"] == "r"
    assert "baseline_run" not in rows["r/rml"]  # its own run's baseline: nothing to say
    assert rows["r/rml"]["paired_difference"]["mean"] == 0.0
    assert rows["other/rml"]["paired_difference"] is None  # no baseline anywhere for it
    table = gather_results.markdown(list(rows.values()))
    assert "+1.00 ± 0.82 (2/0 of 3, p 0.500), baseline of `r`" in table


def test_import_keeps_seed_folders_apart(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _seeded_run(runs, "r", f"tfe_s{seed}", "tfe", "tfe", seed, [90.0])
    written = import_runs.import_run(runs / "r", tmp_path / "results")
    assert sorted(p.name for p in written) == ["tfe_s0", "tfe_s1"]


def test_hng_real_neutral_reference_counts_same_subject_pairs_within_the_threshold():
    identity = load_script("benchmarks/identity.py", "identity_bench")
    from types import SimpleNamespace

    # Embeddings are the faces themselves (2-d): subject A's two expressive faces sit at
    # 0 and 90 degrees from A's neutral frame, B's one face at 0 degrees from B's; subject C
    # is not a test subject and must not count.
    faces = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    exp = SimpleNamespace(faces=faces, subjects=np.array(["A", "A", "B", "C"]),
                          neutral_faces=np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]),
                          neutral_subjects=np.array(["A", "B", "C"]))
    report = {"test_subjects": ["A", "B"], "threshold_cosine_distance": 0.01}
    out = identity.real_neutral_rate(report, exp, lambda x: np.asarray(x, np.float64).copy())
    assert (out["faces"], out["neutral_frames"], out["pairs"]) == (3, 2, 3)
    assert out["preserved_percent"] == pytest.approx(100.0 * 2 / 3)
    assert out["mean_cosine_distance"] == pytest.approx(1.0 / 3)


def test_identity_table_shows_the_hng_rate_on_the_whole_frame_when_measured():
    identity = load_script("benchmarks/identity.py", "identity_bench")
    fold = {"generated_mean_cosine_distance": 0.09,
            "real_neutral": {"mean_cosine_distance": 0.03, "preserved_percent": 90.0}}
    doc = {"networks": {}, "hng_identity_rate": 0.1, "hng_real_neutral_rate": 88.9,
           "hng_folds": [fold]}
    assert "whole aligned frame" not in identity.markdown(doc)
    doc["hng_folds"] = [{**fold, "frame60": {
        "generated_mean_cosine_distance": 0.2,
        "real_neutral": {"mean_cosine_distance": 0.05, "preserved_percent": 97.0}}}]
    doc.update(hng_identity_rate_frame60=2.5, hng_real_neutral_rate_frame60=97.0)
    doc["hng_source"] = "gpu/run"
    table = identity.markdown(doc)
    assert "| generated by the HNG (mean of 1 hng.json of gpu/run) | 0.1 | 0.090 |" in table
    assert "| generated, on the whole aligned frame | 2.5 | 0.200 |" in table
    assert "| real neutral frames, on the whole aligned frame | 97.0 | 0.050 |" in table


def test_hng_probe_reads_each_setting_from_its_run_config_and_sorts_the_table(tmp_path,
                                                                              monkeypatch):
    identity = load_script("benchmarks/identity.py", "identity_bench")
    seen = []

    def fields(paths, root):  # the real one embeds CK+ with the face network
        seen.append([Path(p).name for p in paths])
        rate = 10.0 * len(seen)
        return {"hng_identity_rate": rate, "hng_identity_rate_note": "n",
                "hng_real_neutral_rate": 91.8,
                "hng_folds": [{"fold": k, "generated_mean_cosine_distance": d}
                              for k, d in ((0, 0.05), (1, 0.07))]}

    monkeypatch.setattr(identity, "hng_fields", fields)
    for name, extra in (("face_w10", {"perceptual": "face_resnet", "hng_epochs": 200,
                                      "hng": {"residual": True},
                                      "hng_weights": {"identity_weight": 10.0,
                                                      "pixel_weight": 1.0}}),
                        ("default", {})):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"extra": extra}))
        for k in (1, 0):
            (folder / f"hng_fold{k}.json").write_text('{"threshold_cosine_distance": 0.1}')
    # face_w10's run also saved its generated test faces: one moved to the real neutral (0),
    # one copied its input (200)
    np.savez_compressed(tmp_path / "face_w10" / "hng_test_faces_fold0.npz",
                        inputs=np.full((2, 48, 48), 200, np.uint8),
                        generated=np.stack([np.zeros((60, 60), np.uint8),
                                            np.full((60, 60), 200, np.uint8)]),
                        subjects=np.array(["S1", "S1"]))
    exp = types.SimpleNamespace(neutral_faces=np.zeros((1, 60, 60), np.uint8),
                                neutral_subjects=np.array(["S1"]))
    monkeypatch.setattr(identity, "_hng_reference", lambda root: (exp, None))
    # the expression model's verdict: only black faces are neutral
    monkeypatch.setattr(identity, "_neutral_judge",
                        lambda: ((lambda faces: faces.max(axis=(1, 2)) == 0), "judge"))
    # the face network's verdict per face, at the fold's threshold: both keep identity
    from keras_fer.training import idferm_identity
    thresholds = []
    monkeypatch.setattr(idferm_identity, "identity_kept",
                        lambda model, inputs, generated, threshold:
                        thresholds.append(threshold) or np.ones(len(inputs), bool))
    probe = identity.hng_probe([tmp_path / "face_w10", tmp_path / "default"], tmp_path)
    assert thresholds == [0.1]
    assert seen == [["hng_fold0.json", "hng_fold1.json"]] * 2
    assert probe["face_w10"] == {"perceptual": "face_resnet", "identity_weight": 10.0,
                                 "hng_init": None, "hng_epochs": 200,
                                 "hng": {"residual": True},
                                 "other_weights": {"pixel_weight": 1.0},
                                 "folds": [0, 1], "hng_identity_rate": 10.0,
                                 "hng_real_neutral_rate": 91.8,
                                 "generated_mean_cosine_distance": pytest.approx(0.06),
                                 "neutrality_folds": 1, "neutral_judge": "judge",
                                 "closer_to_neutral_percent": 50.0,
                                 "called_neutral_percent_generated": 50.0,
                                 "called_neutral_percent_input": 0.0,
                                 "called_neutral_percent_real_neutral": 100.0,
                                 "kept_and_called_neutral_percent": 50.0,
                                 "pixel_l1_generated_to_neutral": pytest.approx(100 / 255),
                                 "pixel_l1_input_to_neutral": pytest.approx(200 / 255)}
    assert (probe["default"]["perceptual"], probe["default"]["identity_weight"]) == (
        "expression", 0.03)
    # the figures stay in neutrality.json once the (git-ignored) faces are gone
    (tmp_path / "face_w10" / "hng_test_faces_fold0.npz").unlink()
    again = identity.hng_probe([tmp_path / "face_w10"], tmp_path)["face_w10"]
    assert {k: v for k, v in again.items() if "neutral" in k} == {
        k: v for k, v in probe["face_w10"].items() if "neutral" in k}
    assert again["closer_to_neutral_percent"] == 50.0
    rows = identity.probe_markdown(probe)
    assert rows[3] == ("| expression, 0.03 | 0,1 | 20.0 | n/m | 0.060 | 91.8 | n/m | n/m | "
                       "n/m | n/m |")
    assert rows[4] == ("| face_resnet, 10, 200 epochs, residual true, pixel_weight 1 | 0,1 | "
                       "10.0 | n/m | 0.060 | 91.8 | 50.0 | 0.392 / 0.784 | 50.0 / 0.0 / 100.0 | "
                       "50.0 |")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="no hng_fold<k>.json"):
        identity.hng_probe([tmp_path / "empty"], tmp_path)


def test_a_method_without_a_baseline_pairs_with_a_named_run_and_variant(tmp_path, monkeypatch):
    monkeypatch.setattr(gather_results, "BASELINE_RUN", {"plain": ("r", "baseline")})
    _seeded_run(tmp_path, "r", "baseline_s0", "idferm", "baseline", 0, [90.0, 80.0, 70.0])
    _seeded_run(tmp_path, "plain", "resnet18_std_s0", "expression", "resnet18_std", 0,
                [91.0, 78.0, 70.0])
    _seeded_run(tmp_path, "alone", "resnet18_std_s0", "expression", "resnet18_std", 0,
                [91.0, 78.0, 70.0])
    rows = {r["run"]: r for r in gather_results.collect(tmp_path)}
    assert rows["plain"]["paired_difference"] == {
        "mean": round(-1 / 3, 2), "std": round(float(np.std([1.0, -2.0, 0.0])), 2), "n": 3,
        "wins": 1, "losses": 1}
    assert rows["plain"]["baseline_run"] == "r"
    assert rows["alone"]["paired_difference"] is None


def test_recipe_table_names_the_seed_only_where_a_run_has_several(tmp_path):
    recipe = load_script("benchmarks/expression_recipe.py")

    def ferplus_run(run, folder, seed, valid, test):
        out = tmp_path / run / folder
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps({
            "method": "expression", "variant": "resnet18_std", "dataset": "ferplus",
            "best_epochs": [50], "valid_accuracy": valid, "valid_accuracy_tta_flip": valid,
            "valid_accuracy_tta_flip_crops": valid, "mean_accuracy": test,
            "test_accuracy_tta_flip": test, "test_accuracy_tta_flip_crops": test}))
        (out / "config.json").write_text(json.dumps({
            "seed": seed, "lr": 0.1, "epochs": 100, "extra": {"optimizer": "sgd"}}))

    ferplus_run("single", "resnet18_std", 0, 84.7, 82.79)
    for seed in (0, 1):
        ferplus_run("seeds", f"resnet18_std_s{seed}", seed, 83.0 + seed, 82.0)
    table = recipe.rows(tmp_path)
    assert sorted((r["run"], r["seed"], r["valid"]) for r in table) == [
        ("seeds", 0, 83.0), ("seeds", 1, 84.0), ("single", 0, 84.7)]
    text = recipe.markdown(table)
    assert "| seeds (seed 0) |" in text and "| seeds (seed 1) |" in text
    assert "| single |" in text and "single (seed" not in text


def test_the_cross_dataset_gap_counts_each_model_as_predict_answers_by_default():
    cross = load_script("benchmarks/cross_dataset.py")
    rows = {"a": {"accuracy": 70.0}, "a_balanced": {"accuracy": 80.0},
            "a_balanced_flip": {"accuracy": 90.0}, "b": {"accuracy": 75.0},
            "fer": {"accuracy": 60.0}}
    # a: its prior-divided default, not the --tta=flip variant; b ships no prior: its own
    assert cross.default_answers(rows) == {"a": 80.0, "b": 75.0}
