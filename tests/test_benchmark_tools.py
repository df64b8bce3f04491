"""The GPU-run helpers: packing results for the trip back, one GPU per job, and the
throughput table gathered from the stages' timing.json."""

import importlib.util
import json
import sys
import tarfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_run = _load("gpu_run")
gather_results = _load("gather_results")


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
    parts = gpu_run._pack(["runs"], tmp_path / "out.tar.gz", {"fold_0/inference.keras"},
                          part_bytes=4000)
    assert [p.name for p in parts] == ["out.tar.gz", "out.tar.gz.1"]
    names = sorted(n for p in parts for n in tarfile.open(p).getnames())
    kept = sorted(n.rsplit("_", 1)[1] for n in names if "/grids/" in n)
    assert kept == ["001.png", "025.png", "050.png", "075.png", "100.png"]
    assert "runs/m/fold_0/inference.keras" in names and "runs/m/results.json" in names
    assert not any(n.endswith(".h5") for n in names)
    # No part holds more than part_bytes of files unless one file alone is larger.
    for part in parts:
        assert sum(m.size for m in tarfile.open(part).getmembers()) <= 4000


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
