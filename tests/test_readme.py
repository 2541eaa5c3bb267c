"""The README's "From Python" section runs as written (its own small settings keep it quick)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python_section_code() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2, "the README's Python section lost its code"
    return "\n".join(blocks)


def test_readme_python_section_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "TMPDIR": str(tmp_path)}  # fmt: skip
    run = subprocess.run([sys.executable, "-c", python_section_code()], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    assert "v**2 + 4.0*x**2" in run.stdout and "def conserved_quantity" in run.stdout
    assert (tmp_path / "curves.png").is_file()
