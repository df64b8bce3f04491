"""The local DAG runner: caching, atomic artifact directories, lineage, a run log.

For each component in order the runner computes the cache key (component name, config,
input artifact fingerprints, external inputs such as the currently served model, package
version and the SHA-256 of the component's source) and then:

- ``<root>/<Component>/<key16>/metadata.json`` exists and the directory still has the
  recorded fingerprint: the component is *cached*, its artifact is reused;
- otherwise it *executes* into ``<root>/<Component>/.tmp-<key16>/``, the runner fingerprints
  the result, writes ``metadata.json`` (inputs, outputs, config, code version, timings) into
  it and renames it to ``<key16>/``.

A killed or crashed run therefore leaves only a hidden temporary directory. The next run
with the same inputs wipes it and starts the component again, except for *resumable*
components (the Trainer), which are handed the same temporary directory back so they resume
from their own checkpoints. A lock on ``<root>/.lock`` keeps two runners off one root.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import keras_fer
from keras_fer.pipeline import artifacts
from keras_fer.pipeline.artifacts import Artifact

log = logging.getLogger(__name__)

Executor = Callable[[Mapping[str, Artifact], Path], Dict[str, object]]


@dataclasses.dataclass(frozen=True)
class Component:
    """One node of the DAG.

    Attributes:
        name: unique name, also the folder under the pipeline root.
        executor: ``executor(inputs, output_dir) -> properties``: writes the artifact into the
            empty (or, if ``resumable``, partially filled) ``output_dir`` and returns
            JSON-serialisable properties (relative paths, counts, verdicts).
        inputs: names of upstream components whose artifacts ``executor`` receives.
        config: JSON-serialisable settings that change the output (part of the cache key).
        code: modules/packages whose source is the component's code version.
        external: optional callable giving JSON-serialisable facts about the world outside
            the pipeline root that the output depends on (the currently pushed model).
        resumable: keep a crashed run's temporary directory for the next attempt.
    """

    name: str
    executor: Executor
    inputs: Tuple[str, ...] = ()
    config: Mapping[str, object] = dataclasses.field(default_factory=dict)
    code: Tuple[str, ...] = ()
    external: Optional[Callable[[], Mapping[str, object]]] = None
    resumable: bool = False


@dataclasses.dataclass
class PipelineResult:
    """What a run did: every component's artifact, and which ran versus came from the cache."""

    artifacts: Dict[str, Artifact]
    executed: List[str]
    cached: List[str]
    run_log: Path


class PipelineLockedError(RuntimeError):
    """Another runner holds the pipeline root's lock."""


def _check_dag(components: Sequence[Component]) -> None:
    seen: set[str] = set()
    for c in components:
        if c.name in seen:
            raise ValueError(f"Duplicate component name {c.name!r}.")
        missing = [i for i in c.inputs if i not in seen]
        if missing:
            raise ValueError(
                f"Component {c.name!r} needs {missing}, which do not run before it. "
                f"Received order: {[x.name for x in components]}"
            )
        seen.add(c.name)


def _lock(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "a+")
    try:
        # flock dies with its process, so a killed runner never leaves the root locked.
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise PipelineLockedError(f"--pipeline_root={root} is in use by {holder}; wait for that "
                                  "run to finish or choose another --pipeline_root.") from err
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    return handle


def _cached(final: Path, name: str) -> Optional[Artifact]:
    meta = artifacts.read_metadata(final)
    if meta is None:
        return None
    recorded = meta["outputs"]["fingerprint"]
    if artifacts.fingerprint_dir(final) != recorded:
        # Someone edited or truncated a finished artifact: it cannot be trusted any more.
        log.warning("%s: %s no longer matches its fingerprint; re-running", name, final)
        stale = final.with_name(f"{artifacts.TMP_PREFIX}stale-{final.name}-{os.getpid()}")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
        return None
    return Artifact(name, final, recorded, meta["outputs"]["properties"])


def _execute(component: Component, inputs: Mapping[str, Artifact], final: Path,
             document: Dict[str, object]) -> Artifact:
    tmp = final.with_name(f"{artifacts.TMP_PREFIX}{final.name}")
    if tmp.exists() and not component.resumable:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.time()
    properties = component.executor(inputs, tmp)
    fingerprint = artifacts.fingerprint_dir(tmp)
    document.update(
        outputs={"uri": str(final), "fingerprint": fingerprint, "properties": properties},
        started=datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        wall_seconds=round(time.time() - started, 2),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    artifacts.write_json_atomic(tmp / artifacts.METADATA_FILE, document)
    os.rename(tmp, final)
    return Artifact(component.name, final, fingerprint, dict(properties))


def run_components(components: Sequence[Component], pipeline_root: str | Path) -> PipelineResult:
    """Runs ``components`` in order (each after its inputs) with caching; see module docstring.

    Args:
        components: the DAG in a topological order.
        pipeline_root: folder holding one sub-folder per component, and ``runs/`` logs.

    Returns:
        The run's :class:`PipelineResult`; the run log is also written to
        ``<root>/runs/<timestamp>-<pid>.json``.

    Raises:
        PipelineLockedError: another run is using ``pipeline_root``.
        Exception: whatever a component raised; finished components stay cached.
    """
    _check_dag(components)
    root = Path(pipeline_root).resolve()
    lock = _lock(root)
    done: Dict[str, Artifact] = {}
    executed: List[str] = []
    cached: List[str] = []
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    run_log = root / "runs" / f"{stamp}-{os.getpid()}.json"
    run_log.parent.mkdir(parents=True, exist_ok=True)
    entries: List[Dict[str, object]] = []
    try:
        for component in components:
            inputs = {name: done[name] for name in component.inputs}
            external = dict(component.external()) if component.external else {}
            code = {
                "package": keras_fer.__version__,
                "source_sha256": artifacts.source_hash(component.code),
            }
            key = artifacts.cache_key(
                component.name,
                component.config,
                {n: a.fingerprint for n, a in inputs.items()},
                external,
                code,
            )
            final = root / component.name / key[:16]
            artifact = _cached(final, component.name)
            status = "cached"
            if artifact is None:
                status = "executed"
                print(f"[pipeline] {component.name}: running -> {final}", flush=True)
                document = {
                    "component": component.name,
                    "cache_key": key,
                    "config": dict(component.config),
                    "inputs": {n: {"uri": str(a.uri), "fingerprint": a.fingerprint}
                               for n, a in inputs.items()},
                    "external": external,
                    "code_version": dict(code, git=artifacts.git_describe(),
                                         modules=list(component.code)),
                }
                try:
                    artifact = _execute(component, inputs, final, document)
                except BaseException:
                    entries.append({"component": component.name, "status": "failed",
                                    "uri": str(final)})
                    raise
            else:
                print(f"[pipeline] {component.name}: cached ({final})", flush=True)
            (executed if status == "executed" else cached).append(component.name)
            entries.append({"component": component.name, "status": status,
                            "uri": str(artifact.uri), "fingerprint": artifact.fingerprint})
            done[component.name] = artifact
    finally:
        artifacts.write_json_atomic(run_log, {"root": str(root), "components": entries})
        lock.close()
    return PipelineResult(done, executed, cached, run_log)
