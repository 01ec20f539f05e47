"""Where a generated number comes from: `provenance.json` beside the study's results, and the git questions
about it (which commit is checked out, what changed since the one that produced the numbers).

    results/provenance.json    written by `attrlib.study.runner.run_study` at the start and the end of a study;
                               one record per study run, each naming the notebooks whose results it produced
                               (a later study that re-runs some notebooks takes them over; a record left with
                               none is dropped). Read by `attrlib.study.readme`.

A record: commit (with "-dirty" when tracked files had changed), status (running / finished / failed),
profile, data and its `data_fingerprint`, rotations, seeds, the notebooks' parameters and the profile's
settings (notebook knobs, config overrides, draws), the attrlib, torch and Python versions, started and
finished times, and the notebooks it ran. This module owns the file's format: it writes and reads it.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .data.fingerprint import data_fingerprint
from .rotation import Rotation
from .errors import ConfigError
from .io import atomic_write_json

PROVENANCE_FILE = "provenance.json"
FORMAT = 1
# the folders whose change between two commits can change a generated number
CODE_PATHS = ("attrlib", "notebooks")


# ------------------------------------------------------------------------------------------------------ git
def _git(folder: str | Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


def git_commit(folder: str | Path = ".") -> str | None:
    """The commit checked out in `folder` (with "-dirty" when tracked files changed), or None outside git."""
    head = _git(folder, "rev-parse", "HEAD")
    dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
    if head is None or dirty is None:
        return None
    return head.strip() + ("-dirty" if dirty.strip() else "")


def code_commit() -> str:
    """The commit of the attrlib code running now (`git_commit` of the package's folder), "" when it is not a git
    checkout (an installed wheel): what metrics.json records as the commit that trained a run, and what
    `attrlib predict` names beside it as the commit that predicted."""
    return git_commit(Path(__file__).resolve().parent) or ""


def resolve_commit(commit: str, folder: str | Path = ".") -> str | None:
    """The full hash of `commit` (a full or abbreviated hash, "-dirty" ignored) in the repository at `folder`;
    None when git does not know it there (another clone, a shallow history) or there is no git."""
    out = _git(folder, "rev-parse", "--verify", "--quiet", f"{commit.split('-')[0]}^{{commit}}")
    return out.strip() if out else None


def changed_files(old: str, new: str, folder: str | Path = ".", paths: Sequence[str] = CODE_PATHS) -> list[str] | None:
    """Files under `paths` (relative to the top of the repository holding `folder`) that differ between commits
    `old` and `new`; None when git cannot tell (no git, or a commit it does not know)."""
    out = _git(folder, "diff", "--name-only", old.split("-")[0], new.split("-")[0], "--", *(f":(top){p}" for p in paths))
    return None if out is None else [line for line in out.splitlines() if line]


# ------------------------------------------------------------------------------------------------- records
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def study_record(commit: str | None, profile: str, data: str | os.PathLike, rotations: Iterable[Iterable[str]], seeds: Iterable[int],
                 parameters: Mapping[str, Any], settings: Mapping[str, Any], notebooks: Iterable[str],
                 started: str, finished: str | None = None, status: str = "running") -> dict:
    """One study's record: what `provenance.json` holds for the notebooks it ran (see the module's doc).

    commit: `git_commit()` when the study started (a commit made while it runs is not what produced it);
    parameters: what every notebook was given (papermill's parameters); settings: the profile's entry
    (`attrlib.config.PROFILES[profile]`: seeds, rotations, draws, config overrides, notebook knobs)."""
    return dict(
        commit=commit, status=status, profile=profile, data=os.fspath(data),
        data_fingerprint=data_fingerprint(data), rotations=[list(r) for r in rotations],
        seeds=[int(s) for s in seeds], parameters=dict(parameters), settings=dict(settings),
        versions=dict(attrlib=_version("attrlib"), torch=_version("torch"), python=platform.python_version()),
        started=started, finished=finished, notebooks=sorted(notebooks))


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_provenance(results: str | os.PathLike) -> dict | None:
    """`results/provenance.json` ({"format", "studies": [record, ...]}), or None when there is none."""
    path = Path(results) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} cannot be read ({err}); delete it and re-run the study (`attrlib study`) to "
                          "record where the results come from") from None
    if not isinstance(prov, dict) or not isinstance(prov.get("studies"), list):
        raise ConfigError(f"{path} has no list field 'studies' (format {FORMAT}); delete it and re-run the study")
    return prov


def write_provenance(results: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Add (or replace, same `started`) `record` in `results/provenance.json`, atomically: its notebooks are
    taken from the older records, and a record left with no notebook is dropped."""
    prov = read_provenance(results) or {}
    mine = set(record["notebooks"])
    studies = []
    for old in prov.get("studies", []):
        if old.get("started") == record["started"] and old.get("profile") == record["profile"]:
            continue  # this study's own earlier (running) record
        left = [n for n in old.get("notebooks", []) if n not in mine]
        if left:
            studies.append({**old, "notebooks": left})
    studies.append(dict(record))
    Path(results).mkdir(parents=True, exist_ok=True)
    return atomic_write_json(Path(results) / PROVENANCE_FILE, dict(format=FORMAT, studies=studies))


def producer(prov: Mapping[str, Any] | None, notebook: str) -> dict | None:
    """The record of the study that produced `notebook`'s results (a name or its number prefix: "11")."""
    for record in reversed((prov or {}).get("studies", [])):
        if any(n == notebook or n.startswith(f"{notebook}_") for n in record.get("notebooks", [])):
            return record
    return None


def _where(data: str) -> str:
    path = Path(data)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (OSError, ValueError):
        return path.name or data  # outside the repository: its name, not a machine path


def describe(record: Mapping[str, Any]) -> str:
    """One Markdown line naming a record's commit, profile, data, seeds, rotations, parameters and versions."""
    numbers = sorted({n[:2] for n in record.get("notebooks", [])})
    params = record.get("parameters", {})
    shown = {k: v for k, v in params.items() if k not in ("profile", "data", "heldout", "runs", "figures", "results")}
    settings = record.get("settings", {})
    knobs, config = settings.get("notebook", {}), settings.get("config", {})
    v = record.get("versions", {})
    status = record.get("status", "finished")
    return (f"notebook(s) {', '.join(numbers) or 'none'}: commit `{record.get('commit') or 'unknown (not a git checkout)'}`, "
            f"profile `{record.get('profile')}`, data `{_where(str(record.get('data', '')))}` "
            f"({record.get('data_fingerprint')}), seeds {', '.join(map(str, record.get('seeds', []))) or '?'}, "
            f"rotations {'; '.join(Rotation(r).key for r in record.get('rotations', [])) or '?'}, "
            f"parameters {json.dumps(shown, sort_keys=True)}, config overrides {json.dumps(config, sort_keys=True)}, "
            f"draws {settings.get('draws', '?')}, notebook knobs {json.dumps(knobs, sort_keys=True)}; "
            f"attrlib {v.get('attrlib', '?')}, torch {v.get('torch', '?')}; {record.get('started')} to "
            f"{record.get('finished') or '(not finished)'}" + ("" if status == "finished" else f" **({status})**"))
