"""A new user's first run (issue 17): the right package, honest hints, no silent surprises.

Each test goes through the CLI or the Python API, as a user would.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from datastage.manifest import tomllib

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTION = "datastage-ml"

# -- item 1: every install line installs this project ----------------------------------------

_PIP_INSTALL = re.compile(r"\bpip3?\s+(?:-\w+\s+)*install\b([^`\n#;&|)]*)")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_name(arg: str) -> str:
    """``'datastage-ml[s3]'`` -> ``datastage-ml``; ``pkg @ git+...`` -> ``pkg``."""
    return re.split(r"[\[\s@<>=!~;]", arg.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _install_targets(text: str) -> list[str]:
    """The requirement arguments of every ``pip install`` command in ``text``."""
    targets = []
    for match in _PIP_INSTALL.finditer(text):
        try:
            words = shlex.split(match.group(1))
        except ValueError:
            words = match.group(1).split()
        # "name @ git+url" is one requirement written as three words
        joined = " ".join(words).replace(" @ ", "@")
        targets += [w for w in joined.split() if not w.startswith("-")]
    return targets


def test_distribution_name_and_every_install_line_agree() -> None:
    from datastage import errors

    project = _pyproject()["project"]
    assert project["name"] == DISTRIBUTION  # `datastage` on PyPI is IBM's DataStage SDK
    assert getattr(errors, "DISTRIBUTION", None) == DISTRIBUTION  # what install hints name
    assert project["scripts"] == {"datastage": "datastage.cli:main"}
    repo_url = project["urls"]["Homepage"].rstrip("/")
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / ".ci" / "run"]
    code = sorted((REPO / "datastage").rglob("*.py"))
    checked = 0
    for path in docs + code:
        for target in _install_targets(path.read_text(encoding="utf-8")):
            name = _requirement_name(target)
            ours = name in (DISTRIBUTION, ".") or target.startswith((".", "'.", '".'))
            from_repo = target.strip("'\"").startswith(f"git+{repo_url}") or (
                f"@git+{repo_url}" in target
            )
            if name == "datastage" or "datastage" in name and not (ours or from_repo):
                raise AssertionError(f"{path.name}: `pip install {target}` is not this project")
            checked += ours or from_repo
    assert checked >= 6  # the Quickstart, the Install section, the Colab cell, the extras
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    colab_cell = readme.split("### Notebooks (Colab)", 1)[1].split("```", 2)[1]
    assert f"install \"git+{repo_url}\"" in colab_cell or f"install {DISTRIBUTION}" in colab_cell


def test_quickstart_keeps_its_two_set_up_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quickstart", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == [
        "pip install . && datastage get demo --to ./data",
        "pip install '.[test]' && python -m pytest -q",
    ]
    assert "pip install '.[test]' && python -m pytest -q" in (REPO / ".ci" / "run").read_text()
