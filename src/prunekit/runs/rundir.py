"""The output folder of one run, and the one rule for every command's outputs.

* A run refuses to touch an existing output file unless asked to overwrite (CLI
  ``--overwrite``); commands that resume (``train``, ``search``) may also continue
  their own earlier run.
* Overwriting first clears the previous run's own outputs: the files listed under
  ``outputs`` in its ``report.json`` (the manifest), and the command's known output
  names. Files the user put beside them stay; so do the run's inputs (``keep``).
* Every file is written atomically (:mod:`prunekit.utils.io`); the orphan
  ``.NAME.*.tmp`` files a kill leaves behind are removed when the next run opens the
  folder.
* ``report.json`` records the provenance and every file the run wrote (``outputs``),
  ``report.md`` renders the same report (:mod:`prunekit.runs.report`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from prunekit.errors import PrunekitError

#: what :func:`tempfile.mkstemp` names the temporary files of :func:`prunekit.utils.io.atomic_write`
_TMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def orphan_temp_files(folder: str | os.PathLike, names=None, recursive: bool = True) -> list[Path]:
    """The ``.NAME.XXXXXXXX.tmp`` files of interrupted atomic writes under ``folder``.

    ``names``: only those of these target file names (None: any). Searched recursively unless told not to.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    found = root.rglob(".*.tmp") if recursive else root.glob(".*.tmp")
    out = []
    for p in found:
        m = _TMP.match(p.name)
        if m and p.is_file() and (names is None or m.group("name") in names):
            out.append(p)
    return sorted(out)


def clean_orphans(folder: str | os.PathLike, names=None, recursive: bool = True) -> list[Path]:
    """Delete :func:`orphan_temp_files`; returns what was removed."""
    removed = []
    for p in orphan_temp_files(folder, names, recursive):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:  # another process finished (or cleaned) it meanwhile
            pass
    return removed


class RunDir:
    """The output folder of one run (see the module docstring for the rule it enforces).

    Open it with :meth:`open` before any work, record files written by other code with
    :meth:`add`, and finish with :meth:`write_report`.

    Args (of :meth:`open`):
        path: the folder.
        outputs: names (relative paths; a trailing ``/`` marks a folder) this command writes.
        overwrite: allow replacing outputs; clears the previous run's outputs first.
        resume: allow continuing a previous run of the same command in place (nothing is cleared).
        resumable: the command can resume (the refusal then says so).
        keep: paths that must survive the clearing (the run's inputs, e.g. a reused super-network).
        what: how refusals name the folder's content, e.g. ``"a search"``.
        require_empty: refuse a folder holding any file at all (not only outputs) unless ``overwrite``.
        prefix: report file names are ``PREFIX + "report.json"``/``"report.md"`` (single-file outputs such
            as ``out.pkz`` report into ``out.pkz.report.json``).
        shared: the folder is not the run's own (e.g. the parent of an output file): only this run's
            own names are searched for orphan temporary files. Otherwise every orphan at the top level
            and in the run's own sub-folders (outputs ending in ``/``, or listed in the manifest) goes.
        error: the exception class of refusals.

    Example:
        >>> import tempfile
        >>> run = RunDir.open(tempfile.mkdtemp(), outputs=["model.pt"])
        >>> run.write_json("extra.json", {"a": 1}).name
        'extra.json'
    """

    def __init__(self, path: Path, outputs: tuple, prefix: str, shared: bool, snapshot: dict):
        self.path = path
        self.outputs = outputs
        self.prefix = prefix
        self.shared = shared
        self._snapshot = snapshot
        self._written: list[str] = []

    @classmethod
    def open(cls, path: str | os.PathLike, outputs=(), *, overwrite: bool = False, resume: bool = False,
             keep=(), what: str = "a run", require_empty: bool = False, prefix: str = "", shared: bool = False,
             resumable: bool = False, error: type = PrunekitError, hint: str | None = None) -> "RunDir":
        """Check ``path`` against the output rule and clear it when overwriting; see the class doc."""
        root = Path(path)
        previous: list[str] = []
        if root.exists() and not root.is_dir():
            raise error(f"{root} exists and is not a directory")
        report_names = (prefix + "report.json", prefix + "report.md")
        outputs = tuple(dict.fromkeys([*outputs, *report_names]))
        if root.is_dir():
            previous = _manifest(root / report_names[0], root)
            if shared:
                clean_orphans(root, names={o.rstrip("/") for o in outputs}, recursive=False)
            else:
                # the folder's top level, and the run's own sub-folders: a run nested below (another --out)
                # may be writing its temporary files right now
                clean_orphans(root, recursive=False)
                subdirs = {o.split("/")[0] for o in (*outputs, *previous) if "/" in o.rstrip("/") or o.endswith("/")}
                for d in sorted(subdirs):
                    clean_orphans(root / d)
            hint = hint or ("--resume to continue it or --overwrite to start over (API: resume=True / overwrite=True)"
                            if resumable else "--overwrite to replace it (API: overwrite=True)")
            if require_empty and not overwrite and any(_visible(root)):
                raise error(f"{root} already holds files; pass --overwrite to reuse it")
            existing = [root / o.rstrip("/") for o in (*outputs, *previous)]
            existing = [p for p in existing if p.exists() or p.is_symlink()]
            if existing and not (overwrite or resume):
                raise error(f"{root} already holds {what}: {existing[0].relative_to(root)} already exists; "
                            f"pass {hint}")
            if overwrite and not resume:  # resuming continues the previous run: its files are its state
                _clear(root, [*previous, *outputs], keep)
        # created by the first write (atomic_write makes the parents), so a run failing early leaves nothing behind
        run = cls(root, outputs, prefix, shared, {} if shared else _stat_tree(root))
        if resume and not overwrite:  # the continued run's earlier files stay its outputs
            run._written = [n for n in previous if (root / n).exists()]
        return run

    # ---- writing ---------------------------------------------------------------------------------

    def file(self, name: str) -> Path:
        """The path of output ``name`` in this folder (recorded as written; its folder created)."""
        self.add(name)
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        return self.path / name

    def add(self, *paths) -> None:
        """Record files written by other code (checkpoints, plans) as this run's outputs."""
        for p in paths:
            p = Path(p)
            if not p.is_absolute() and not p.parts[:len(self.path.parts)] == self.path.parts:
                p = self.path / p
            try:
                rel = p.resolve().relative_to(self.path.resolve())
            except ValueError:
                continue  # outside the folder: not this run's to clear later
            if str(rel) not in self._written:
                self._written.append(str(rel))

    def write_text(self, name: str, text: str) -> Path:
        """Write a text file atomically."""
        from prunekit.utils.io import atomic_write

        with atomic_write(self.file(name), "w") as f:
            f.write(text)
        return self.path / name

    def write_json(self, name: str, data, indent: int = 1) -> Path:
        """Write JSON atomically (non-finite floats as null)."""
        from prunekit.runs.report import to_json

        text = to_json(data) if indent == 1 else json.dumps(data, indent=indent, default=str) + "\n"
        return self.write_text(name, text)

    def figure(self, name: str, **kw):
        """:func:`prunekit.runs.plots.figure` writing ``name`` in this folder."""
        from prunekit.runs.plots import figure

        return figure(self.file(name), **kw)

    def written(self) -> list[str]:
        """The run's outputs so far: recorded files, plus (own folder) files created since :meth:`open`.

        Files that existed before are only the run's if it wrote them through this object (or
        :meth:`add`): a file of the user's that changed meanwhile is not claimed (``--overwrite``
        would delete it).
        """
        names = list(self._written)
        if not self.shared:
            names += [n for n in _stat_tree(self.path) if n not in self._snapshot and n not in names]
        return sorted(dict.fromkeys(names))

    def write_report(self, report, provenance: dict | None = None) -> dict:
        """Write ``report.json`` (``report.data`` + ``provenance`` + ``outputs``) and ``report.md``; returns the JSON.

        ``report`` is a :class:`prunekit.runs.Report`. ``outputs`` lists every file this run wrote
        (report.json and report.md included): the manifest the next ``--overwrite`` clears.
        """
        from prunekit.runs.report import render_markdown

        json_name, md_name = self.prefix + "report.json", self.prefix + "report.md"
        self.add(json_name, md_name, *report.plots)
        data = dict(report.data)
        if provenance is not None:
            data["provenance"] = provenance
        data["outputs"] = sorted(dict.fromkeys([*self.written(), json_name, md_name]))
        self.write_text(md_name, render_markdown(report, provenance))
        self.write_json(json_name, data)
        return data


def _visible(root: Path):
    return (p for p in root.iterdir() if not _TMP.match(p.name))


def _stat_tree(root: Path) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if _TMP.match(f):
                continue
            p = Path(dirpath) / f
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out[str(p.relative_to(root))] = (st.st_mtime_ns, st.st_size)
    return out


def _manifest(report_json: Path, root: Path) -> list[str]:
    """The ``outputs`` a previous run recorded in its report.json (empty if none or unreadable)."""
    try:
        data = json.loads(report_json.read_text())
    except (OSError, ValueError):
        return []
    names = data.get("outputs") if isinstance(data, dict) else None
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and _inside(root, n)]


def _inside(root: Path, name: str) -> bool:
    try:
        (root / name).resolve().relative_to(root.resolve())
    except ValueError:
        return False  # a manifest naming ../x is not trusted to delete it
    return True


def _missing_ok(fn, path, exc_info) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def _clear(root: Path, names, keep) -> None:
    kept = {Path(k).resolve() for k in keep if k is not None}
    for name in dict.fromkeys(names):
        p = root / name.rstrip("/")
        if not _inside(root, name) or p.resolve() in kept:
            continue
        # gone already is fine: ranks of a torchrun job may clear the same folder at once
        if p.is_dir() and not p.is_symlink():
            if any(k.is_relative_to(p.resolve()) for k in kept):
                continue
            shutil.rmtree(p, onerror=_missing_ok)
        elif p.exists() or p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    # folders left empty by the clearing go too (a stale finetune/ of the previous run)
    for name in names:
        parent = (root / name).parent
        while parent != root and _inside(root, str(parent.relative_to(root))):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
