"""Issue 19's test plan: each mistake a new user made is one line (exit 2), found before
anything is written; a run folder is owned (lock, config check, --overwrite); readers name
what is wrong with a row or a split.

Most cases run a trainer's ``main`` in this process (``common.guarded``: what ``python -m
trainers.<method>`` runs); one subprocess checks the exit status and stderr as a shell sees them.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flag_helpers import parsed_flags
from keras_fer.data import readers
from keras_fer.data.experiments import load_experiment
from keras_fer.data.readers import DatasetError
from keras_fer.training import rundir, settings
from keras_fer.training.config import TrainConfig
from trainers import common
from trainers import idennet as idennet_trainer
from trainers import ifgan as ifgan_trainer

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FER_DATA_DIR", REPO.parent / "shared" / "data"))


def _main(trainer, capsys, *argv):
    """``(exit status, stderr)`` of ``trainer``'s guarded main on ``argv``."""
    with parsed_flags(trainer.__name__, *argv):
        status = common.guarded(trainer.main)([])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("flag, message", [
    ("--variant=ifx", "--variant=ifx is not a variant of idennet; valid: original, i, f, if."),
    ("--fold=-2", "--fold=-2: give a fold index 0..9"),
    ("--batch_size=0", "--batch_size=0: must be a positive integer."),
    ("--limit=64", "--limit=64: works on the datasets with fixed splits (ferplus, fer2013) "
     "only; synthetic is read whole"),
    ("--export=onnx", "--export=onnx: Unknown export formats ['onnx']"),
    ('--extra={"emotion_inti": "runs/x.keras"}',
     "--extra for idennet: unknown key 'emotion_inti'; valid keys: alpha, distill_epochs"),
    ('--extra={"alpha": "0.1"}', "--extra for idennet: 'alpha' must be number or null."),
    ('--extra={"emotion_init": "/nonexistent/stream.keras"}',
     "--extra 'emotion_init': /nonexistent/stream.keras not found; give an existing file"),
    ('--extra={"alpha": 0.1', "--extra is not valid JSON ("),
    ("--extra=[1]", "--extra must be a JSON object"),
])
def test_a_bad_setting_is_one_line_and_writes_nothing(tmp_path, capsys, flag, message):
    model_dir = tmp_path / "run"
    status, err = _main(idennet_trainer, capsys, f"--model_dir={model_dir}", flag)
    assert status == 2
    assert err.startswith("error: " + message) and err.count("\n") == 1, err
    assert not model_dir.exists()


def test_wrong_data_dir_says_which_folder_was_expected(tmp_path, capsys):
    model_dir = tmp_path / "run"
    status, err = _main(idennet_trainer, capsys, f"--model_dir={model_dir}",
                        "--dataset=ckplus48", f"--data_dir={tmp_path}")
    assert status == 2 and err.count("\n") == 1
    assert f"--dataset=ckplus48 expects {tmp_path}/ckplus48/CK+48" in err
    assert "the folder holding ckplus48/" in err and "found run/" not in err
    assert not model_dir.exists()
    # The dataset's own folder given where the root is expected (what describe --path takes).
    own = tmp_path / "ckplus48"
    (own / "CK+48" / "anger").mkdir(parents=True)
    status, err = _main(idennet_trainer, capsys, f"--model_dir={model_dir}",
                        "--dataset=ckplus48", f"--data_dir={own}")
    assert status == 2
    assert "found CK+48/." in err and "looks like the dataset's own folder" in err
    assert not model_dir.exists()


def test_model_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("x")
    status, err = _main(idennet_trainer, capsys, f"--model_dir={path}")
    assert status == 2 and f"--model_dir={path} is a file; give a folder" in err


def test_verbose_shows_the_traceback(tmp_path):
    with parsed_flags("idennet", f"--model_dir={tmp_path / 'run'}", "--fold=-2", "--verbose"):
        with pytest.raises(settings.ConfigError, match="--fold=-2"):
            common.guarded(idennet_trainer.main)([])


def _config(model_dir, **changes) -> TrainConfig:
    return TrainConfig(**{"method": "idennet", "variant": "original", "model_dir": str(model_dir),
                          "depth": 40, "epochs": 30, **changes})


def test_rerun_with_another_config_is_refused_listing_the_differences(tmp_path):
    first = _config(tmp_path)
    first.write(tmp_path)
    (tmp_path / "fold_0").mkdir()
    rundir.prepare(_config(tmp_path, fold=3, export=("savedmodel",)))  # where/what to write
    with pytest.raises(rundir.RunDirError) as info:
        rundir.prepare(_config(tmp_path, variant="if", depth=16, epochs=2))
    message = str(info.value)
    assert "\n" not in message and "--overwrite" in message
    assert 'depth 40 -> 16; epochs 30 -> 2; variant "original" -> "if"' in message
    assert (tmp_path / "fold_0").exists()
    rundir.prepare(_config(tmp_path, variant="if"), overwrite=True)
    assert not (tmp_path / "fold_0").exists() and not (tmp_path / "config.json").exists()


def test_a_run_folder_in_use_names_its_holder(tmp_path, capsys):
    with rundir.locked(tmp_path):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(rundir.RunDirError, match=f"in use by pid {os.getpid()} on "
                                                     f"{socket.gethostname()}"):
            with rundir.locked(tmp_path):
                pass
        # Through a trainer: one line, nothing touched.
        status, err = _main(ifgan_trainer, capsys, f"--model_dir={tmp_path}", "--epochs=1")
        assert status == 2 and f"is in use by pid {os.getpid()}" in err
        assert not (tmp_path / "config.json").exists()
    # The kernel releases the lock with its holder: the folder is free again.
    with rundir.locked(tmp_path):
        pass


@pytest.mark.slow
def test_second_trainer_on_a_locked_folder_exits_2_in_one_line(tmp_path):
    """As a shell sees it: another process holds the folder (its lock dies with it)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('{\"pid\": 4242, \"host\": \"gpu-box\"}'); "
         "f.flush(); print('held', flush=True); time.sleep(60)", str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-m", "trainers.ifgan", f"--model_dir={tmp_path}",
                               "--epochs=1"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: --model_dir={tmp_path} is in use by pid 4242 on gpu-box "
                      "(since ?); wait for that run to finish or choose another --model_dir."]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "config.json").exists()


def test_lock_is_fcntl_flock(tmp_path):
    """Another open file description of .lock cannot take it while a run holds it."""
    with rundir.locked(tmp_path):
        with open(tmp_path / ".lock") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


# --------------------------------------------------------------------------- readers

PIXELS = " ".join(["7"] * 2304)


def test_fer2013_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(("\ufeffemotion,pixels,Usage\n"
                      f"3,{PIXELS},Training\n4,{PIXELS},PublicTest\n").encode("utf-8"))
    table = readers.read_fer2013_csv(path)
    assert len(table) == 2 and not table.skipped
    assert len(set(table.expression.tolist())) == 2 and (table.expression >= 0).all()


def test_a_bad_byte_rejects_its_row_not_the_file(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(b"emotion,pixels,Usage\n"
                     + f"3,{PIXELS},Training\n".encode()
                     + b"4,\xff" + PIXELS[1:].encode() + b",Training\n"
                     + f"5,{PIXELS},PrivateTest\n".encode())
    table = readers.read_fer2013_csv(path)
    assert table.path.tolist() == [f"{path}:2", f"{path}:4"]
    assert [(s.line, s.reason) for s in table.skipped] == [(3, "not UTF-8 text (byte 0xff)")]


def test_a_csv_without_header_is_a_short_message(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text(f"3,{PIXELS},Training\n4,{PIXELS},Training\n")
    with pytest.raises(DatasetError) as info:
        readers.read_fer2013_csv(path)
    message = str(info.value)
    assert len(message) < 400, len(message)
    assert "lacks column(s) ['pixels']: its first row must be the header" in message


def test_row_errors_are_short(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + f"3,{PIXELS},Training\n"
                    + "3," + " ".join(["1234567"] * 3000) + ",Training\n")
    table = readers.read_fer2013_csv(path)
    assert len(table.skipped) == 1 and len(table.skipped[0].reason) <= 300


def _ferplus_split(folder: Path, rows: int, columns: int = 12):
    folder.mkdir(parents=True)
    lines = []
    for i in range(rows):
        Image.fromarray(np.full((48, 48), 40 + i, np.uint8)).save(folder / f"f{i}.png")
        votes = ["0"] * 10
        votes[i % 7] = "10"
        lines.append(",".join([f"f{i}.png", '"(0, 0, 48, 48)"', *votes][:columns]))
    (folder / "label.csv").write_text("\n".join(lines) + "\n")


def test_ferplus_valid_split_without_a_column_is_named_empty(tmp_path):
    data = tmp_path / "ferplus" / "data"
    _ferplus_split(data / "FER2013Train", 14)
    _ferplus_split(data / "FER2013Valid", 8, columns=11)
    _ferplus_split(data / "FER2013Test", 8)
    with pytest.raises(DatasetError) as info:
        load_experiment("ferplus", tmp_path)
    message = str(info.value)
    assert "the valid split(s) of" in message and "are empty" in message
    assert "expected 12 columns" in message and "subject id" not in message


def test_describe_with_a_bom_csv_lists_its_classes(tmp_path):
    from keras_fer.data.describe import describe

    path = tmp_path / "fer2013.csv"
    path.write_bytes(f"\ufeffemotion,pixels\n3,{PIXELS}\n".encode("utf-8"))
    summary = describe(readers.load("fer2013_csv", path))
    assert summary["classes"] and summary["images"] == 1


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "ckplus48").is_dir(), reason="needs $FER_DATA_DIR/ckplus48")
def test_describe_given_the_data_root_says_which_folder_it_wants():
    proc = subprocess.run([sys.executable, "-m", "keras_fer.data", "describe",
                           "--format=ckplus48", f"--path={DATA}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: --path={DATA} is the data root")
    assert proc.stderr.rstrip().endswith(f"--path={DATA / 'ckplus48' / 'CK+48'}")


def test_typed_extra_lists_exactly_the_keys_each_method_reads():
    """The typed settings and the keys each method checks at fit time cannot drift apart."""
    import dataclasses

    from keras_fer.training import idennet, idferm, tfe

    for module, schema in [(idennet, settings.IDEnNetExtra), (tfe, settings.TFEExtra),
                           (idferm, settings.IDFERMExtra)]:
        assert set(module.EXTRA_KEYS) == {f.name for f in dataclasses.fields(schema)}, module


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--dataset_format=ckplus48"], "error: --dataset_path is required for "
     "--dataset_format=ckplus48"),
    (["--dataset_format=folder", "--dataset_path=."], "error: --dataset_format=folder: not a "
     "format the trainers can train on"),
    (["--reader_kwargs={bad"], "error: --reader_kwargs is not valid JSON"),
    (["--folds=5", "--eval_fold=5"], "error: --folds=5 --eval_fold=5: need folds >= 2"),
])
def test_pipeline_cli_mistakes_are_one_line(tmp_path, argv, message):
    root = tmp_path / "pipeline"
    proc = subprocess.run([sys.executable, "-m", "keras_fer.pipeline", f"--pipeline_root={root}",
                           *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and not root.exists()


@pytest.mark.slow
def test_export_cli_mistakes_are_one_line(tmp_path):
    model = tmp_path / "inference.keras"
    model.write_bytes(b"")
    for argv, message in [
        ([f"--model={tmp_path / 'none.keras'}"], "is not a file; give a trainer run's"),
        ([f"--model={model}", "--formats=onnx"], "--formats=onnx: Unknown export formats"),
        ([f"--model={model}", f"--data_dir={tmp_path}"], "--dataset=ckplus48 expects"),
    ]:
        proc = subprocess.run([sys.executable, "tools/export_trained.py", "--dataset=ckplus48",
                               "--name=x", f"--serving_dir={tmp_path / 'served'}", *argv],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and message in proc.stderr
        assert proc.stderr.count("\n") == 1 and not (tmp_path / "served").exists()


def test_trainer_refuses_a_folder_of_another_config_before_touching_it(tmp_path, capsys):
    """The issue's first case: rerunning a finished run's folder with other flags."""
    previous = TrainConfig(method="ifgan", variant="ifgan", model_dir=str(tmp_path), epochs=30,
                           lr=1e-4, pretrain_lr=1e-4, extra={"generator_filters": 32})
    previous.write(tmp_path)
    before = (tmp_path / "config.json").read_text()
    status, err = _main(ifgan_trainer, capsys, f"--model_dir={tmp_path}", "--variant=baseline",
                        "--epochs=2", '--extra={"generator_filters": 8}')
    assert status == 2 and err.count("\n") == 1
    assert ("epochs 30 -> 2; extra {\"generator_filters\": 32} -> {\"generator_filters\": 8}; "
            "variant \"ifgan\" -> \"baseline\". Rerun with --overwrite") in err
    assert (tmp_path / "config.json").read_text() == before


@pytest.mark.slow
def test_a_trainer_mistake_is_the_only_line_on_stderr(tmp_path):
    """As a shell sees it, with TensorFlow's native start-up lines (oneDNN, CUDA probing,
    CPU features) not silenced by the environment: stderr is the one ``error:`` line; with
    ``--verbose`` TensorFlow's own lines are back."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = [sys.executable, "-m", "trainers.idennet", "--dataset=ckplus48",
            f"--model_dir={tmp_path / 'run'}", "--fold=-2"]
    quiet = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2
    assert quiet.stderr.startswith("error: --fold=-2: give a fold index")
    assert quiet.stderr.count("\n") == 1, quiet.stderr
    loud = subprocess.run(args + ["--verbose"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert loud.returncode != 0 and "Traceback" in loud.stderr
    assert loud.stderr.count("\n") > quiet.stderr.count("\n") + 3
    assert not (tmp_path / "run").exists()


def test_data_dir_of_experiment_packs_passes_the_check(tmp_path):
    """tools/make_pack.py's folder (what the GPU machine trains from) is a valid --data_dir:
    the dataset's pack stands in for its image folder; another dataset's pack does not."""
    from keras_fer.data import experiments, packs
    from keras_fer.training import settings

    exp = experiments.load_experiment("synthetic", data_dir=tmp_path / "raw")
    packs.save_pack(exp, tmp_path).rename(tmp_path / "ckplus_neutral_ck8.npz")
    settings.check_data_dir("ckplus_neutral", str(tmp_path))  # ck8: the dataset's default
    settings.check_data_dir("ckplus_neutral", str(tmp_path), "ck8")
    with pytest.raises(settings.ConfigError, match="--dataset=ckplus48 expects"):
        settings.check_data_dir("ckplus48", str(tmp_path))
    # A pack of another protocol (or without ORL) is not this run's: say which to build.
    for args, flags in ((("ck7",), "--protocol=ck7 --out="),
                        (("ck8", 0, False), "--protocol=ck8 --no_orl --out=")):
        with pytest.raises(settings.ConfigError) as err:
            settings.check_data_dir("ckplus_neutral", str(tmp_path), *args)
        message = str(err.value)
        assert "holds ckplus_neutral_ck8.npz but not ckplus_neutral_" in message
        assert f"python tools/make_pack.py --dataset=ckplus_neutral {flags}" in message
        assert "\n" not in message
