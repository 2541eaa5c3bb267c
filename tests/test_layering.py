"""The import layering: setup.cfg's import-linter contracts hold, and no module imports itself back.

Both checks run in a subprocess with this checkout first on the path, so they judge these files
whatever the installed package points at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='setup.cfg', no_cache=True, no_logo=True))")  # fmt: skip
GRAPH = ("import grimp, json; g = grimp.build_graph('lawfinder', 'dsl'); "
         "print(json.dumps([[m, i] for m in g.modules for i in g.find_modules_directly_imported_by(m)]))")  # fmt: skip


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_import_linter_contracts_hold():
    pytest.importorskip("importlinter")
    run = _python(LINT)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_no_import_cycles():
    pytest.importorskip("grimp")
    import networkx as nx

    run = _python(GRAPH)
    assert run.returncode == 0, run.stderr[-2000:]
    graph = nx.DiGraph(json.loads(run.stdout))
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"
