"""lawfinder: discover conservation laws in trajectory data and use them as tailoring losses.

::

    import lawfinder as lf
    result = lf.search(frame, units={"x": "m", "v": "m/s"})  # or arrays, Trajectories, "pendulum"
    law = result.best                   # a lawfinder.Law: law.params, law.latex(), law.torch()
    lf.SearchResult.load(result.folder)  # a finished run folder

The names below are imported on first use, so ``import lawfinder`` (and the command line) stays
fast and does not load torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "search": "lawfinder.api",
    "fit": "lawfinder.api",
    "load_system": "lawfinder.api",
    "as_trajectories": "lawfinder.api",
    "SearchResult": "lawfinder.runs.results",
    "FitResult": "lawfinder.runs.results",
    "Law": "lawfinder.laws.law",
    "Parameter": "lawfinder.laws.law",
    "Trajectories": "lawfinder.data.trajectories",
    "NoetherLoss": "lawfinder.tailoring",
    "tailored_predict": "lawfinder.tailoring",
    "UserError": "lawfinder.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lawfinder' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
