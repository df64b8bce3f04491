"""Every repository path, module and ``python -m`` entry point the docs name exists.

Scanned: README.md, docs/*.md and the READMEs of benchmarks/, tools/ and pretrained/. What
counts as a reference, by rule:

- a repository path: a token of an inline code span, or a link target, whose first component
  is a top-level entry of the repository (``keras_fer/...``, ``tools/gpu_run.py``,
  ``README.md``); link targets are relative to the document that holds them, code spans to
  the repository root. Skipped: URLs, anchors, placeholders and globs (``<run>``, ``*``,
  ``...``, ``$OUT``) and what the tools write (``runs/``, ``.devdata/``: not in the tree);
- a dotted name of the project's packages in a code span (``keras_fer.export.qat``,
  ``trainers.idennet``, ``keras_fer.data.synthetic.make_dataset``): the longest prefix
  that is a module must exist, and the next name must be defined at its top level;
- ``python -m <module>`` and ``python <script>.py`` anywhere, fenced blocks included, for the
  project's packages and folders.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        *(REPO / folder / "README.md" for folder in ("benchmarks", "tools", "pretrained"))]
TOP = {p.name for p in REPO.iterdir() if not p.name.startswith(".") or p.name == ".ci"}
TOP -= {"runs", ".devdata", "keras_fer.egg-info"}
PACKAGES = {"keras_fer", "trainers", "benchmarks", "tools"}

CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
PYTHON_M = re.compile(r"python3?\s+-m\s+([A-Za-z_][\w.]*)(\S*)")
PYTHON_SCRIPT = re.compile(r"python3?\s+([\w./-]+\.py)\b")
DOTTED = re.compile(r"^(?:%s)(?:\.[A-Za-z_]\w*)+$" % "|".join(sorted(PACKAGES)))
PLACEHOLDER = re.compile(r"[<>*?\[\]$]|\.\.\.|\{[^}]*$")


def _spans(text: str) -> list[str]:
    return CODE_SPAN.findall(FENCE.sub("", text))


def _expand_braces(token: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", token)
    if not match:
        return [token]
    head, tail = token[: match.start()], token[match.end() :]
    return [x for part in match.group(1).split(",") for x in _expand_braces(head + part + tail)]


def _clean(token: str) -> str:
    token = token.split("=", 1)[1] if token.startswith("-") and "=" in token else token
    for _ in range(3):  # --extra='{"key": "path"}': quotes and unbalanced braces around a path
        token = token.strip("'\"()[],;")
        if token.endswith("}") and token.count("}") > token.count("{"):
            token = token[:-1]
        if token.startswith("{") and token.count("{") > token.count("}"):
            token = token[1:]
    token = re.sub(r":\d+(-\d+)?$", "", token)  # file.py:12
    return token.rstrip(".:")


def _path_refs(doc: Path):
    text = doc.read_text()
    for span in _spans(text):
        for raw in span.split():
            token = _clean(raw)
            if not token or PLACEHOLDER.search(token) or "://" in token:
                continue
            first = token.split("/", 1)[0]
            if first in TOP and (("/" in token) or token == first):
                for path in _expand_braces(token):
                    yield span, REPO / path
    for target in LINK.findall(FENCE.sub("", text)):
        target = target.split("#", 1)[0]
        if not target or "://" in target or target.startswith("mailto:"):
            continue
        if PLACEHOLDER.search(target):
            continue
        yield target, (doc.parent / target)
    for script in PYTHON_SCRIPT.findall(text):  # fenced blocks included
        if script.split("/", 1)[0] in TOP:
            yield f"python {script}", REPO / script


@functools.lru_cache(maxsize=None)
def _top_level_names(path: Path) -> frozenset:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            names.update(_names_in(node))
    return frozenset(names)


def _names_in(node) -> set:
    names = set()
    for child in ast.walk(node):
        if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
            names.add(child.name)
        elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            names.add(child.id)
        elif isinstance(child, ast.alias):
            names.add((child.asname or child.name).split(".")[0])
    return names


def _module_file(parts) -> Path | None:
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted_problem(name: str) -> str | None:
    """Why ``name`` does not resolve, or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(parts[:cut])
        if module is None:
            continue
        rest = parts[cut:]
        if not rest or rest[0] in _top_level_names(module):
            return None
        if module.name == "__init__.py" and (module.parent / rest[0]).is_dir():
            return None
        return f"{'.'.join(parts[:cut])} defines no {rest[0]!r}"
    return "no such module"


def _dotted_refs(doc: Path):
    for span in _spans(doc.read_text()):
        for raw in span.split():
            token = _clean(raw)
            if DOTTED.match(token) and not token.endswith((".py", ".md", ".json", ".keras")):
                yield span, token


def _python_m_refs(doc: Path):
    for module, rest in PYTHON_M.findall(doc.read_text()):
        if module.split(".")[0] in PACKAGES and not rest:  # rest: `trainers.<method>`
            yield module


def test_docs_are_scanned():
    assert (REPO / "README.md") in DOCS
    assert any(True for _ in _path_refs(REPO / "README.md"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_paths_exist(doc):
    missing = sorted({f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}"
                      f"  (in `{span}`)"
                      for span, path in _path_refs(doc) if not path.exists()})
    assert not missing, f"{doc.name} names paths that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_modules_exist(doc):
    problems = sorted({f"{name}: {why}" for _, name in _dotted_refs(doc)
                       if (why := _dotted_problem(name))})
    problems += sorted({f"python -m {m}: no such module" for m in _python_m_refs(doc)
                        if _module_file(m.split(".")) is None
                        and _module_file(m.split(".") + ["__main__"]) is None})
    assert not problems, f"{doc.name} names modules that do not exist:\n" + "\n".join(problems)


def test_rules_on_examples(tmp_path, monkeypatch):
    doc = tmp_path / "x.md"
    doc.write_text(
        "`tools/gpu_run.py --jobs=tools/jobs/<x>.txt` `runs/<run>/results.json` "
        "`benchmarks/results/gpu/summary.{json,md}` `trainers/idennet.py:7` "
        "[a](https://example.com) `keras_fer.nothere` `keras_fer.export` `fer_peer.py`\n"
        "`--extra='{\"init\": \"pretrained/README.md\"}'`\n"
        "```\npython -m trainers.nothere\npython -m trainers.<method>\n"
        "python tools/nothere.py --out=runs/x\n```\n"
    )
    refs = {str(p.relative_to(REPO)) for _, p in _path_refs(doc) if p.is_relative_to(REPO)}
    assert refs == {"tools/gpu_run.py", "benchmarks/results/gpu/summary.json", "tools/nothere.py",
                    "benchmarks/results/gpu/summary.md", "trainers/idennet.py",
                    "pretrained/README.md"}
    assert [n for _, n in _dotted_refs(doc)] == ["keras_fer.nothere", "keras_fer.export"]
    assert _dotted_problem("keras_fer.nothere") is not None
    assert _dotted_problem("keras_fer.export") is None
    assert list(_python_m_refs(doc)) == ["trainers.nothere"]
