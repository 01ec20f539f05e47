"""environment.yml (conda users) and pyproject.toml (pip users) must list the same dependencies."""
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport the dev extra installs there
    import tomli as tomllib

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _norm(reqs):
    return {(r.name.lower().replace("_", "-"), str(r.specifier), str(r.marker)) for r in map(Requirement, reqs)}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _norm(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = _norm(p for p in pip_section if not p.startswith("-e"))
    assert listed == declared, (
        f"only in environment.yml: {sorted(listed - declared)}; only in pyproject.toml: {sorted(declared - listed)}"
    )
    assert "-e ." in pip_section, "environment.yml must install the project itself (-e .)"


def test_torch_is_a_range_not_a_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = next(Requirement(r) for r in project["dependencies"] if r.startswith("torch"))
    assert "==" not in str(torch.specifier), "users elsewhere must not be pinned to one torch build"
