"""What every run records so that it can be reproduced: command, seed, versions, device, git revision."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

_PACKAGES = ("lawfinder", "numpy", "scipy", "sympy", "pint", "pandas", "torch", "joblib")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_revision() -> str | None:
    """The checkout's HEAD (with ``-dirty`` if modified), or None outside a git work tree."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_metadata(seed: int | None = None, device: str | None = None) -> dict:
    return {
        "command": " ".join(["lawfinder", *sys.argv[1:]]) if sys.argv else "lawfinder",
        "seed": seed,
        "device": device,
        "versions": versions(),
        "git_revision": git_revision(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), **_torch_threads()},
    }


def _torch_threads() -> dict:
    """Results depend on torch's thread count (reduction order), so it is recorded when torch is loaded."""
    torch = sys.modules.get("torch")
    return {"torch_threads": torch.get_num_threads()} if torch is not None else {}
