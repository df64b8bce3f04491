"""The local DAG runner: caching, lineage metadata, atomic artifacts, crash and kill recovery.

Toy components (a few bytes of files each) stand in for the real ones, so these tests check
the runner's guarantees without TensorFlow; the end-to-end test runs the real DAG.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from keras_fer.pipeline import artifacts
from keras_fer.pipeline.runner import Component, PipelineLockedError, run_components

CODE = ("keras_fer.pipeline.runner",)


def _dag(calls, scale=1, crash_in=None):
    """source -> double -> report; each records its calls and can crash after partial writes."""

    def source(inputs, out):
        calls.append("source")
        (out / "numbers.txt").write_text("1 2 3\n")
        return {"file": "numbers.txt"}

    def double(inputs, out):
        calls.append("double")
        numbers = inputs["source"].path("file").read_text().split()
        (out / "part.txt").write_text("partial")
        if crash_in == "double":
            raise RuntimeError("simulated crash")
        (out / "doubled.txt").write_text(" ".join(str(int(n) * 2 * scale) for n in numbers))
        return {"file": "doubled.txt"}

    def report(inputs, out):
        calls.append("report")
        total = sum(int(n) for n in inputs["double"].path("file").read_text().split())
        (out / "total.json").write_text(json.dumps({"total": total}))
        return {"total": total}

    return [
        Component("source", source, (), {"n": 3}, CODE),
        Component("double", double, ("source",), {"scale": scale}, CODE),
        Component("report", report, ("double",), {}, CODE),
    ]


def _finished_dirs(root, name):
    return sorted(p for p in (root / name).iterdir() if not p.name.startswith("."))


def test_first_run_executes_all_and_writes_lineage(tmp_path):
    calls = []
    result = run_components(_dag(calls), tmp_path)
    assert calls == ["source", "double", "report"]
    assert result.executed == ["source", "double", "report"] and result.cached == []
    assert result.artifacts["report"].properties == {"total": 12}
    meta = artifacts.read_metadata(result.artifacts["double"].uri)
    # Lineage: the recorded input is the upstream artifact, by URI and fingerprint.
    assert meta["inputs"]["source"] == {"uri": str(result.artifacts["source"].uri),
                                        "fingerprint": result.artifacts["source"].fingerprint}
    assert meta["config"] == {"scale": 1}
    assert meta["code_version"]["package"] and len(meta["code_version"]["source_sha256"]) == 64
    assert meta["outputs"]["fingerprint"] == artifacts.fingerprint_dir(meta["outputs"]["uri"])
    log = json.loads(result.run_log.read_text())
    assert [e["status"] for e in log["components"]] == ["executed"] * 3


def test_unchanged_run_is_cached_and_config_change_reruns_downstream_only(tmp_path):
    run_components(_dag([]), tmp_path)
    calls = []
    again = run_components(_dag(calls), tmp_path)
    assert calls == [] and again.cached == ["source", "double", "report"]
    calls = []
    changed = run_components(_dag(calls, scale=10), tmp_path)
    assert calls == ["double", "report"]
    assert changed.cached == ["source"]
    assert changed.artifacts["report"].properties == {"total": 120}
    # One artifact directory per component run: both versions of "double" are kept.
    assert len(_finished_dirs(tmp_path, "double")) == 2


def test_crash_leaves_no_artifact_and_rerun_finishes(tmp_path):
    calls = []
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_components(_dag(calls, crash_in="double"), tmp_path)
    assert calls == ["source", "double"]
    # The partial write exists only in the hidden temporary directory.
    assert _finished_dirs(tmp_path, "double") == []
    hidden = [p for p in (tmp_path / "double").iterdir() if p.name.startswith(".tmp-")]
    assert len(hidden) == 1 and (hidden[0] / "part.txt").exists()
    failed = json.loads(sorted((tmp_path / "runs").iterdir())[-1].read_text())
    assert failed["components"][-1]["status"] == "failed"

    calls = []
    result = run_components(_dag(calls), tmp_path)
    assert calls == ["double", "report"] and result.cached == ["source"]
    assert result.artifacts["report"].properties == {"total": 12}
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "double").iterdir())
    assert sorted(p.name for p in result.artifacts["double"].uri.iterdir()) == [
        "doubled.txt", "metadata.json", "part.txt"]


def test_resumable_component_gets_its_partial_directory_back(tmp_path):
    attempts = []

    def resumable(inputs, out):
        attempts.append(sorted(p.name for p in out.iterdir()))
        (out / "checkpoint").write_text(str(len(attempts)))
        if len(attempts) == 1:
            raise RuntimeError("killed mid-training")
        return {}

    component = Component("train", resumable, (), {}, CODE, resumable=True)
    with pytest.raises(RuntimeError):
        run_components([component], tmp_path)
    run_components([component], tmp_path)
    assert attempts == [[], ["checkpoint"]]


def test_edited_artifact_is_not_trusted(tmp_path):
    first = run_components(_dag([]), tmp_path)
    (first.artifacts["double"].uri / "doubled.txt").write_text("999")
    calls = []
    result = run_components(_dag(calls), tmp_path)
    assert calls == ["double"]  # report's input fingerprint is the same again: cached
    assert result.artifacts["report"].properties == {"total": 12}


def test_dag_order_and_duplicates_are_checked(tmp_path):
    source, double, _ = _dag([])
    with pytest.raises(ValueError, match="needs \\['source'\\]"):
        run_components([double, source], tmp_path)
    with pytest.raises(ValueError, match="Duplicate"):
        run_components([source, source], tmp_path)


_KILLED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from keras_fer.pipeline.runner import Component, run_components

    def first(inputs, out):
        (out / "a.txt").write_text("a")
        return {}

    def slow(inputs, out):
        (out / "half.txt").write_text("half")
        Path(sys.argv[2]).write_text("started")
        time.sleep(60)
        return {}

    run_components([Component("first", first, (), {}, ("keras_fer.pipeline.runner",)),
                    Component("slow", slow, ("first",), {}, ("keras_fer.pipeline.runner",))],
                   sys.argv[1])
""")


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_finishes_without_corruption(tmp_path):
    root, started = tmp_path / "root", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(root), str(started)])
    try:
        deadline = time.time() + 60
        while not started.exists():
            assert proc.poll() is None and time.time() < deadline, "child did not start"
            time.sleep(0.1)
        # The lock is held while the child runs.
        with pytest.raises(PipelineLockedError, match=f"in use by pid {proc.pid} on "):
            run_components([], root)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(_finished_dirs(root, "first")) == 1 and _finished_dirs(root, "slow") == []

    calls = []

    def first(inputs, out):
        calls.append("first")
        (out / "a.txt").write_text("a")
        return {}

    def slow(inputs, out):
        calls.append("slow")
        assert list(out.iterdir()) == []  # the killed run's half-written file is not reused
        (out / "done.txt").write_text("done")
        return {"ok": True}

    result = run_components([Component("first", first, (), {}, CODE),
                             Component("slow", slow, ("first",), {}, CODE)], root)
    assert calls == ["slow"] and result.cached == ["first"]
    assert artifacts.read_metadata(result.artifacts["slow"].uri)["outputs"]["properties"] == {
        "ok": True}
