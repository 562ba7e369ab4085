"""The examples' data packages are an extra: without them, `ar-tui run
--example forecast` says in one line what to install. A real process whose
site-packages lacks statsmodels (every other installed package is linked in),
so nothing is patched."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HIDDEN = ("statsmodels", "backtesting")


def _site_without(tmp_path: Path, hidden: tuple[str, ...]) -> Path:
    lean = tmp_path / "site"
    lean.mkdir()
    for packages in site.getsitepackages():
        for entry in Path(packages).iterdir():
            if entry.name.split("-")[0].split(".")[0].lower() in hidden or (lean / entry.name).exists():
                continue
            (lean / entry.name).symlink_to(entry)
    return lean


def test_an_example_without_its_data_package_says_what_to_install(tmp_path: Path) -> None:
    lean = _site_without(tmp_path, HIDDEN)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{lean}")
    # -S: no site-packages but the lean copy (and no .pth editable install of another checkout).
    done = subprocess.run([sys.executable, "-S", "-m", "ar_tui.cli", "run", "--headless", "--example", "forecast"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "ar-tui: the forecast example reads its data from the statsmodels package, which is not installed: "
        "pip install 'ar-tui[examples]'"]


def test_the_default_install_leaves_the_example_data_packages_to_the_extra() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    default = " ".join(project["dependencies"])
    assert not any(name in default for name in HIDDEN)
    assert {d.split(">")[0] for d in project["optional-dependencies"]["examples"]} == set(HIDDEN)
    assert any("examples" in d for d in project["optional-dependencies"]["test"])
