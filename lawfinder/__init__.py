"""lawfinder: discover conservation laws in trajectory data and use them as tailoring losses.

::

    import lawfinder as lf
    result = lf.search(frame, units={"x": "m", "v": "m/s"})  # or arrays, Trajectories, "pendulum"
    law = result.best                   # a lawfinder.Law: law.params, law.latex(), law.torch()
    lf.SearchResult.load(result.folder)  # a finished run folder

The names below are imported on first use, so ``import lawfinder`` (and the command line) stays
fast and does not load torch.
"""

import sys
import types
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "search": "lawfinder.api",
    "fit": "lawfinder.api",
    "load_system": "lawfinder.api",
    "as_trajectories": "lawfinder.api",
    "SearchResult": "lawfinder.results",
    "FitResult": "lawfinder.results",
    "Law": "lawfinder.laws",
    "Parameter": "lawfinder.laws",
    "Trajectories": "lawfinder.trajectories",
    "NoetherLoss": "lawfinder.tailoring",
    "tailored_predict": "lawfinder.tailoring",
    "UserError": "lawfinder.errors",
}

__all__ = sorted(_EXPORTS)


class _Package(types.ModuleType):
    """Keeps ``lawfinder.fit`` the function: importing the submodule of that name would rebind it.

    The module stays importable (``from lawfinder.fit import ...``, ``import_module``).
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lawfinder' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
