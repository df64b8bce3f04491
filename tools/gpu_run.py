"""Runs many trainer invocations side by side on the GPU machine and packs what comes back.

JAX compiles every new model on the CPU, and on one H100 a CK+ fold trains in seconds, so a
10-fold protocol is bound by compilation: running folds as parallel processes (16 cores)
is what makes a full protocol fit in the device's 10-minute command limit, and JAX's
persistent compilation cache (``runs/.jax_cache``, set here for every job) lets folds whose
train steps have the same shapes reuse one compile. Each job is one line of trainer
arguments; per-fold jobs of the same ``--model_dir`` are aggregated at the end with
``--fold=-1 --aggregate_only`` (``results.json`` and the plots from the folds that finished,
``folds_expected`` saying how many there should be).

    python3 tools/gpu_run.py --jobs=jobs.txt --parallel=12 --out=$OUT/runs.tar.gz

A job line: ``<trainer module> <args...>``, e.g.
``trainers.idennet --dataset=ckplus48 --variant=if --fold=3 --model_dir=runs/ck_if``.
Lines starting with ``#`` are comments; a line ``---`` waits for all jobs above it; a job
starting with ``@after=<path>`` is not started before that file exists (e.g. a model that an
earlier job is still training). ``--pilot`` starts one job of each flagfile and variant first
and the others once it has compiled (a cold machine's folds then load its train step from the
cache instead of compiling it side by side). Before any job starts, a missing input (Keras
not importable, a ``.devdata/`` file a job or its flagfile names) is one line each, exit 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

KEEP_SUFFIXES = (".json", ".csv", ".png", ".log", ".md")


def read_jobs(path: Path) -> list[str]:
    """A job list's lines: one job each (``---`` separates batches), ``#`` comments and blank
    lines left out."""
    return [ln.strip() for ln in Path(path).read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


OUT_OF_MEMORY = ("RESOURCE_EXHAUSTED", "CUDA_ERROR_OUT_OF_MEMORY", "out of memory")


def _out_of_memory(log: Path) -> bool:
    """Whether a failed job's log ends in a GPU out-of-memory error."""
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 20000))
        tail = f.read().decode("utf-8", "replace")
    return any(marker in tail for marker in OUT_OF_MEMORY)


def _group(line: str) -> str:
    """A job's compile group: its command without ``--fold``, ``--seed`` and ``--model_dir``
    (the folds and seeds of one flagfile and variant compile the same train step)."""
    skip = ("--fold=", "--seed=", "--model_dir=")
    return shlex.join(a for a in shlex.split(_command(line)) if not a.startswith(skip))


def _epochs_begun(log: Path) -> int:
    """How many ``Epoch k/n`` lines a job's log holds (Keras prints one as each epoch starts)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return sum(line.startswith("Epoch ") for line in text.splitlines())


def _run_batch(jobs, parallel: int, log_dir: Path, deadline: float = float("inf"),
               retries: int = 1, gpus: int = 1, pilot: bool = False):
    """Runs ``jobs`` ``parallel`` at a time; a job that fails is started again ``retries``
    times (stages resume, so a retry costs only the unfinished work: on a fresh machine a few
    of many processes compiling at once have failed their first train step). A job that ran
    out of GPU memory is retried last, and only while at most half of ``parallel`` jobs run:
    session 15's 40 jobs on two H200s ran out of memory, and their retries, started at once
    among the same 40, ran out again.

    With ``pilot``, the first job of each compile group (:func:`_group`) runs alone until it
    has finished its first epoch (its log begins a second one) or exited: the others then
    find its compiled train step in JAX's persistent cache instead of compiling it side by
    side. Session 19's 30 CK+ baselines, all compiling at once, took 110-123 s for their first
    epoch; the two retried after the rest had compiled took 3-4 s for it."""
    running, done = [], []
    queue = list(jobs)
    tries = {i: 0 for i, _ in jobs}
    short_of_memory, half = set(), max(1, parallel // 2)
    groups = {i: _group(line) for i, line in jobs} if pilot else {}
    pilots = {g: i for i, g in reversed(list(groups.items()))}
    warm = set()

    def released(job) -> bool:
        i = job[0]
        return not pilot or pilots[groups[i]] == i or groups[i] in warm

    while queue or running:
        running_ids, queued_ids = {r[0] for r in running}, {q[0] for q in queue}
        for group, i in pilots.items():
            if group in warm:
                continue
            if i in running_ids:  # (its log is this run's only once it has started)
                compiled = _epochs_begun(log_dir / f"job{i:03d}.log") >= 2
            else:
                compiled = i not in queued_ids  # the pilot exited
            if not compiled:
                continue
            warm.add(group)
            rest = sum(groups[q[0]] == group for q in queue)
            if rest:
                print(f"[{time.strftime('%H:%M:%S')}] pilot job {i} past its first epoch or "
                      f"done: starting the {rest} others of its group", flush=True)
        if time.time() > deadline:
            for i, line, proc, start, log, _ in running:
                proc.kill()
                print(f"job {i} killed at the deadline: {line}", flush=True)
            return done + [(i, -9, time.time() - s, ln) for i, ln, _, s, _, _ in running]
        ready = [job for job in queue if _ready(job[1]) and released(job)]
        while ready and len(running) < parallel:
            job = ready.pop(0)
            if job[0] in short_of_memory and len(running) >= half:
                continue
            queue.remove(job)
            i, line = job
            line = _command(line)
            log = open(log_dir / f"job{i:03d}.log", "w")
            cmd = [sys.executable, "-m"] + shlex.split(line)
            # Several GPUs: each job sees one, the one running the fewest jobs.
            gpu = min(range(gpus), key=lambda g: sum(r[5] == g for r in running))
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    env=_job_env(gpu if gpus > 1 else None))
            running.append((i, line, proc, time.time(), log, gpu))
        for item in list(running):
            i, line, proc, start, log, _ = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                if proc.returncode != 0 and tries[i] < retries and time.time() < deadline:
                    tries[i] += 1
                    failed = log_dir / f"job{i:03d}.try{tries[i]}.log"
                    (log_dir / f"job{i:03d}.log").rename(failed)
                    if _out_of_memory(failed):
                        short_of_memory.add(i)
                        queue.append((i, line))
                        print(f"job {i} ran out of GPU memory: retrying once at most {half} "
                              "jobs run (lower --parallel next time)", flush=True)
                    else:
                        queue.insert(0, (i, line))
                        print(f"job {i} rc={proc.returncode}: retrying", flush=True)
                    continue
                done.append((i, proc.returncode, time.time() - start, line))
                print(f"[{time.strftime('%H:%M:%S')}] job {i} rc={proc.returncode} "
                      f"{time.time() - start:.0f}s: {line}", flush=True)
        time.sleep(1)
    return done


def _ready(line: str) -> bool:
    return not line.startswith("@after=") or Path(line.split(" ", 1)[0][7:]).exists()


def _command(line: str) -> str:
    """The trainer command of a job line, without its ``@after=<path>`` condition."""
    return line.split(" ", 1)[1] if line.startswith("@after=") else line


CARRIED = re.compile(r"(?<!--out=)\.devdata/[^\s\"',}]+")  # a job's --out is made, not carried


def missing_inputs(lines, env=None) -> list[str]:
    """What the jobs need that this machine lacks, one line each, checked before any starts.

    Keras must be importable (a fresh machine has only the carried wheels, installed by the
    call's first command), and every ``.devdata/<file>`` a job line or its ``--flagfile``
    names must exist, as must ``$KERAS_FER_DLIB_WEIGHTS`` where it is set: a call that reached
    a machine given back in between would otherwise fail every job with a traceback."""
    import importlib.util

    env = os.environ if env is None else env
    problems = []
    if importlib.util.find_spec("keras") is None:
        problems.append("keras is not importable: this is a fresh machine, carry .whl and "
                        "install it first (tools/README.md)")
    weights = env.get("KERAS_FER_DLIB_WEIGHTS")
    if weights and not Path(weights).is_file():
        problems.append(f"$KERAS_FER_DLIB_WEIGHTS={weights} is not here: carry it")
    needed = {}
    for line in lines:
        words = shlex.split(_command(line))
        flagfiles = [Path(w.split("=", 1)[1]) for w in words if w.startswith("--flagfile=")]
        texts = [_command(line)] + [ln for f in flagfiles if f.is_file()
                                    for ln in f.read_text().splitlines()
                                    if not ln.lstrip().startswith("#")]
        for text in texts:
            for path in CARRIED.findall(text):
                needed.setdefault(path, words[0])
    problems += [f"{path} (read by {job}) is not here: carry it" for path, job
                 in sorted(needed.items()) if not Path(path).exists()]
    return problems


def _job_env(gpu=None):
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path("runs/.jax_cache").resolve()))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")
    return env


def _model_dirs(lines):
    out = {}
    for line in lines:
        args = shlex.split(_command(line))
        module = args[0]
        model_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--model_dir=")), None)
        if model_dir and any(a.startswith("--fold=") and a != "--fold=-1" for a in args):
            rest = [a for a in args[1:] if not a.startswith("--fold=")]
            out[model_dir] = shlex.join([module] + rest + ["--fold=-1", "--aggregate_only"])
    return out


PART_BYTES = 14 * 2**20  # files back from the device: at most 8, 16 MiB each, 64 MiB in all
TOTAL_BYTES = 60 * 2**20  # of input: gzip hardly shrinks npz and h5, so keep a margin


def _wanted(path: Path, keep_models: set) -> bool:
    """Results, logs and plots (of per-epoch image grids only every 25th epoch and the last:
    ten HNG folds' 100 grids each made one call's results 109 MB, over the return limit),
    plus the model files named in ``keep_models``."""
    rel = str(path)
    if rel in keep_models or any(rel.endswith(k) for k in keep_models):
        return True
    if path.suffix not in KEEP_SUFFIXES:
        return False
    if path.parent.name == "grids" and path.suffix == ".png":
        return path.name in _grids_kept(path.parent)
    return True


@functools.lru_cache(maxsize=None)
def _grids_kept(folder: Path) -> frozenset:
    """Names of the grids to bring back from one ``grids/`` folder (listed once per folder):
    the first, every 25th and the last."""
    names = sorted(p.name for p in folder.glob("*.png"))
    return frozenset(n for i, n in enumerate(names)
                     if i == 0 or (i + 1) % 25 == 0 or i == len(names) - 1)


def _pack(roots, out: Path, keep_models: set, part_bytes: int = PART_BYTES,
          total_bytes: int = TOTAL_BYTES) -> tuple:
    """Packs the wanted files into ``out`` and, past ``part_bytes`` of input, further parts
    ``<out>.1``, ``<out>.2``, ... (each a complete .tar.gz), at most ``total_bytes`` of input
    in all; returns ``(parts written, files left out)``.

    Results, logs and plots go first, then the image grids, and the model files named in
    ``keep_models`` last, so that what does not fit the device's return limit is the least
    needed: session 14's 20 HNG jobs with their ``--keep`` npz came to 7 parts, of which the
    last two, with 4 folds' ``hng.json``, were not returned. Files left out stay on the
    machine for a later call.
    """
    files = sorted((p for root in roots for p in Path(root).rglob("*")
                    if p.is_file() and ".jax_cache" not in p.parts and _wanted(p, keep_models)),
                   key=lambda p: (_pack_rank(p), str(p)))
    parts, left_out, size, total, tar = [], [], 0, 0, None
    for path in files:
        nbytes = path.stat().st_size
        if total + nbytes > total_bytes:
            left_out.append(path)
            continue
        if tar is None or (size and size + nbytes > part_bytes):
            if tar is not None:
                tar.close()
            parts.append(out if not parts else out.with_name(f"{out.name}.{len(parts)}"))
            tar, size = tarfile.open(parts[-1], "w:gz"), 0
        tar.add(path, arcname=str(path))
        size += nbytes
        total += nbytes
    if tar is not None:
        tar.close()
    return parts, left_out


def _pack_rank(path: Path) -> int:
    """0: results and logs, 1: image grids, 2: kept model files (the order they are packed)."""
    if path.suffix not in KEEP_SUFFIXES:
        return 2
    return 1 if path.parent.name == "grids" else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--parallel", type=int, default=8,
                        help="jobs at once (all GPUs together). Jobs time-share a GPU: on an "
                        "H100, 12 at once ran each about 3.5x slower than 3 at once, so keep "
                        "this low enough that jobs finish one after another before the deadline")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs to spread jobs over")
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline", type=float, default=540,
                        help="seconds after which running jobs are killed and results packed")
    parser.add_argument("--pilot", action="store_true",
                        help="start one job of each flagfile and variant first and the rest "
                        "once it has compiled (finished its first epoch): on a cold machine, "
                        "so that the rest load its train step from JAX's compilation cache")
    parser.add_argument("--keep", default="", help="comma-separated path suffixes of model "
                        "files to bring back too (e.g. fold_0/inference.keras)")
    args = parser.parse_args()
    lines = read_jobs(args.jobs)
    problems = missing_inputs([ln for ln in lines if ln != "---"])
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr, flush=True)
        sys.exit(2)
    log_dir = Path("runs/logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    start, batch, results, n = time.time(), [], [], 0
    deadline = start + args.deadline
    for line in lines + ["---"]:
        if line == "---":
            results += _run_batch(batch, args.parallel, log_dir, deadline, gpus=args.gpus,
                                  pilot=args.pilot)
            batch = []
        else:
            batch.append((n, line))
            n += 1
    jobs = [ln for ln in lines if ln != "---"]
    aggregates = list(_model_dirs(jobs).values())
    results += _run_batch([(n + i, a) for i, a in enumerate(aggregates)], args.parallel, log_dir,
                          deadline + 40, gpus=args.gpus)
    failed = [r for r in results if r[1] != 0]
    print(f"{len(results)} jobs, {len(failed)} failed, {time.time() - start:.0f}s", flush=True)
    for r in failed:
        print("FAILED:", r, flush=True)
        print((log_dir / f"job{r[0]:03d}.log").read_text()[-3000:], flush=True)
    keep = {k.strip() for k in args.keep.split(",") if k.strip()}
    parts, left_out = _pack(["runs"], Path(args.out), keep)
    for part in parts:
        print(f"packed -> {part} ({os.path.getsize(part) / 1e6:.1f} MB)", flush=True)
    if left_out:
        mb = sum(p.stat().st_size for p in left_out) / 1e6
        print(f"LEFT OUT (over the {TOTAL_BYTES / 2**20:.0f} MiB that come back; still in runs/ "
              f"on this machine): {len(left_out)} files, {mb:.1f} MB, e.g. {left_out[0]}",
              flush=True)


if __name__ == "__main__":
    main()
