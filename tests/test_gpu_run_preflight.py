"""tools/gpu_run.py checks what its jobs need before starting any: session 20's second call
reached a machine that had been given back, without the wheels it expected, and every job
died with a traceback."""

import importlib.util
import subprocess
import sys
from pathlib import Path

from script_loader import REPO, load_script

gpu_run = load_script("tools/gpu_run.py")


def _jobs(tmp_path):
    flags = tmp_path / "m.flags"
    flags.write_text("# made once with --out=.devdata/only_in_a_comment.keras\n"
                     '--extra={"classifier_weights": ".devdata/teacher.keras"}\n')
    return [f"trainers.ifgan --flagfile={flags} --data_dir=.devdata "
            "--face_weights=.devdata/dlib.weights.h5 --fold=0",
            "tools.pretrain_hng --out=.devdata/made_by_this_job.keras",
            f"@after=runs/x/result.json trainers.ifgan --flagfile={flags} --fold=1"]


def test_names_each_missing_carried_file_once_and_nothing_when_all_are_here(tmp_path,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = _jobs(tmp_path)
    problems = gpu_run.missing_inputs(jobs, env={})
    assert [p.split()[0] for p in problems] == [".devdata/dlib.weights.h5",
                                                ".devdata/teacher.keras"]
    assert all("carry it" in p and "\n" not in p for p in problems)
    Path(".devdata").mkdir()
    Path(".devdata/dlib.weights.h5").write_text("w")
    Path(".devdata/teacher.keras").write_text("t")
    assert gpu_run.missing_inputs(jobs, env={}) == []


def test_dlib_weights_variable_and_keras_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = gpu_run.missing_inputs([], env={"KERAS_FER_DLIB_WEIGHTS": "gone.h5"})
    assert problems == ["$KERAS_FER_DLIB_WEIGHTS=gone.h5 is not here: carry it"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "keras" else real(name, *a))
    assert gpu_run.missing_inputs([], env={})[0].startswith("keras is not importable")


def test_main_exits_before_any_job_starts(tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("\n".join(_jobs(tmp_path)) + "\n")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_run.py"),
                           f"--jobs={jobs}", f"--out={tmp_path / 'x.tar.gz'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].startswith("error: .devdata/dlib.weights.h5 ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()  # no job started, no log written
