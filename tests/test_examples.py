"""The scripts in examples/ run, at their --quick settings, and say what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}  # fmt: skip
    run = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return run.stdout


@pytest.fixture(scope="module")
def discovered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples") / "spring"
    return folder, run_example("discover_from_dataframe.py", "--quick", "--out", str(folder), cwd=folder.parent)


def test_discover_from_a_dataframe(discovered):
    folder, out = discovered
    assert "best law: v**2 + 4.0" in out and "C0 = 4 [s**-2]" in out
    assert (folder / "summary.json").is_file()


def test_reload_a_run_folder_and_export(discovered, tmp_path):
    folder, _ = discovered
    out = run_example("reload_and_export.py", str(folder), "--to", str(tmp_path), cwd=tmp_path)
    assert "rank 1: v**2 + 4.0" in out
    namespace = {}
    exec(compile((tmp_path / "law.py").read_text(), "law.py", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "law.tex").read_text().startswith("v^{2}") and (tmp_path / "curves.png").is_file()
    assert (folder / "report.md").is_file()


def test_a_law_as_the_tailoring_loss_of_your_own_model(tmp_path):
    out = run_example("own_model_tailoring.py", "--quick", cwd=tmp_path)
    assert "law: p**2 - 2.99999" in out and "(law)" in out and "tailored with the law" in out
