"""The `Trajectories` container: every stage of lawfinder reads its data through it.

A data set is a tuple of trajectories (sequences of states over time) that may
have different lengths and uneven time steps, named variables with pint unit
strings, optional dx/dt targets, and a train/test label per trajectory.

Derivative targets either come with the data (`derivatives`, one row per
state) or are forward finite differences taken with the actual time step, so
gaps in the time grid are respected and a trajectory of ``T`` points gives
``T - 1`` derivative samples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lawfinder.errors import UserError

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class TorchTrajectories:
    """Trajectories as padded torch tensors, from `Trajectories.to_torch`.

    Shorter trajectories are padded to the longest by repeating their last
    row (so any function of the state stays finite on padding); `mask` tells
    real points from padding.

    Attributes
    ----------
    states : torch.Tensor
        ``(n, T_max, d)`` states.
    times : torch.Tensor
        ``(n, T_max)`` times (constant on padding).
    mask : torch.Tensor
        ``(n, T_max)`` bool, True on real points.
    lengths : torch.Tensor
        ``(n,)`` int64 number of real points per trajectory.
    derivatives : torch.Tensor or None
        ``(n, T_max, d)`` dx/dt targets when the data carries them.
    """

    states: torch.Tensor
    times: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    derivatives: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class Trajectories:
    """A set of trajectories with variable names, units, derivatives and a train/test split.

    Parameters
    ----------
    name : str
        Name of the data set (a system name or a file name).
    variables : tuple of str
        State variable names, one per state column, e.g. ``("q", "p")``.
    units : dict of str to str
        A pint unit string per variable, e.g. ``{"q": "rad", "p": "kg*m**2/s"}``.
    states : tuple of ndarray
        One ``(T_i, d)`` float64 array per trajectory, ``T_i >= 2``.
    times : tuple of ndarray
        One ``(T_i,)`` strictly increasing array per trajectory.
    derivatives : tuple of ndarray or None
        dx/dt targets, one ``(T_i, d)`` array per trajectory, or None to use
        forward finite differences.
    split : tuple of str
        ``"train"`` or ``"test"`` per trajectory.
    time_unit : str
        Pint unit of the times (default seconds).

    Notes
    -----
    Arrays are copied to contiguous float64 on construction, so the container
    owns its data. Invalid input raises `lawfinder.errors.UserError`.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0.0, 1.0, 5)
    >>> x = np.stack([np.cos(t), -np.sin(t)], axis=1)
    >>> data = Trajectories("demo", ("q", "p"), {"q": "m", "p": "m/s"}, (x,), (t,), None, ("train",))
    >>> states, dxdt = data.derivative_pairs()
    >>> states.shape, dxdt.shape
    ((4, 2), (4, 2))
    """

    name: str
    variables: tuple[str, ...]
    units: dict[str, str]
    states: tuple[np.ndarray, ...]
    times: tuple[np.ndarray, ...]
    derivatives: tuple[np.ndarray, ...] | None
    split: tuple[str, ...]
    time_unit: str = "s"

    def __post_init__(self) -> None:
        variables = tuple(self.variables)
        if not variables or len(set(variables)) != len(variables):
            raise UserError(f"{self.name}: variable names must be non-empty and distinct: {variables}")
        for v in variables:
            if not isinstance(v, str) or not v.isidentifier():
                raise UserError(f"{self.name}: variable name {v!r} is not a valid identifier")
        units = dict(self.units)
        missing = [v for v in variables if v not in units]
        extra = [k for k in units if k not in variables]
        if missing or extra:
            raise UserError(
                f"{self.name}: units must name exactly the variables {variables}; "
                f"missing {missing}, unknown {extra}"
            )
        d = len(variables)
        n = len(self.states)
        states = tuple(_as_array(s, self.name, "states", i) for i, s in enumerate(self.states))
        times = tuple(_as_array(t, self.name, "times", i) for i, t in enumerate(self.times))
        split = tuple(self.split)
        if len(times) != n or len(split) != n:
            raise UserError(
                f"{self.name}: {n} state arrays but {len(times)} time arrays and {len(split)} split labels"
            )
        for i, (x, t, s) in enumerate(zip(states, times, split)):
            if x.ndim != 2 or x.shape[1] != d:
                raise UserError(
                    f"{self.name}: trajectory {i}: states have shape {x.shape}, expected (T, {d})"
                )
            if x.shape[0] < 2:
                raise UserError(
                    f"{self.name}: trajectory {i} has {x.shape[0]} point(s); at least 2 are needed"
                )
            if t.shape != (x.shape[0],):
                raise UserError(
                    f"{self.name}: trajectory {i}: times have shape {t.shape}, expected ({x.shape[0]},)"
                )
            if np.any(np.diff(t) <= 0):
                k = int(np.argmax(np.diff(t) <= 0)) + 1
                raise UserError(f"{self.name}: trajectory {i}: time is not strictly increasing at point {k}")
            if s not in SPLITS:
                raise UserError(f"{self.name}: trajectory {i}: split label {s!r} is not 'train' or 'test'")
        derivatives = None
        if self.derivatives is not None:
            derivatives = tuple(
                _as_array(dx, self.name, "derivatives", i) for i, dx in enumerate(self.derivatives)
            )
            if len(derivatives) != n:
                raise UserError(f"{self.name}: {n} state arrays but {len(derivatives)} derivative arrays")
            for i, (x, dx) in enumerate(zip(states, derivatives)):
                if dx.shape != x.shape:
                    raise UserError(
                        f"{self.name}: trajectory {i}: derivatives have shape {dx.shape}, states {x.shape}"
                    )
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "derivatives", derivatives)
        object.__setattr__(self, "split", split)

    @classmethod
    def from_arrays(cls, states: Any, units: dict[str, str], times: Any = None, *, dt: float = 1.0,
                    derivatives: Any = None, name: str = "arrays", time_unit: str = "s",
                    train_fraction: float = 0.8) -> Trajectories:  # fmt: skip
        """Trajectories from arrays, split into train and test as a file is (`lawfinder.data.userdata`).

        Parameters
        ----------
        states : array or list of arrays
            One ``(T, d)`` trajectory, an ``(n, T, d)`` stack or a list of ``(T_i, d)`` arrays;
            columns in the order of `units`.
        units : dict of str to str
            A pint unit per variable, e.g. ``{"x": "m", "v": "m/s"}``.
        times : array or list of arrays, optional
            Times per trajectory (one ``(T,)`` array is shared by all); default ``dt * arange(T)``.
        derivatives : array or list of arrays, optional
            dx/dt targets shaped like `states`; default forward finite differences.
        train_fraction : float
            The first this fraction of the trajectories is train, the rest test; a single
            trajectory is split in time (`lawfinder.data.systems.split_in_time`).

        Examples
        --------
        >>> t = np.linspace(0, 6, 61)
        >>> runs = [np.stack([a * np.cos(t), -a * np.sin(t)], 1) for a in (0.5, 1.0, 1.5, 2.0, 2.5)]
        >>> data = Trajectories.from_arrays(runs, {"x": "m", "v": "m/s"}, t)
        >>> data.n_trajectories, data.split[-1]
        (5, 'test')
        """
        from lawfinder.data.tables import as_array_list, split_arrays

        xs = as_array_list(states, "states", 2)
        ts = [dt * np.arange(len(x)) for x in xs] if times is None else as_array_list(times, "times", 1)
        dxs = None if derivatives is None else as_array_list(derivatives, "derivatives", 2)
        parts = split_arrays(xs, ts * len(xs) if len(ts) == 1 else ts, dxs, train_fraction)
        return cls(name, tuple(units), dict(units), *parts, time_unit)

    @classmethod
    def from_dataframe(cls, frame: Any, units: dict[str, str], *, name: str = "dataframe",
                       source: str | None = None, train_fraction: float = 0.8) -> Trajectories:  # fmt: skip
        """Trajectories from a table with columns ``trajectory``, ``t``, the variables, ``d_<name>``.

        The layout, checks and split are those of a CSV file (`lawfinder.data.userdata.load_table`);
        `units` gives a pint unit per state column (and optionally ``t``); `source` names the
        data in error messages (default `name`).

        Examples
        --------
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"trajectory": [0, 0, 0, 1, 1, 1], "t": [0.0, 0.1, 0.2] * 2,
        ...                       "x": [1.0, 0.9, 0.8, 2.0, 1.8, 1.6], "v": [0.0, -1.0, -2.0] * 2})
        >>> Trajectories.from_dataframe(frame, {"x": "m", "v": "m/s"}).split
        ('train', 'test')
        """
        from lawfinder.data.tables import table_arrays

        table = table_arrays(frame, units, source or name)
        return cls.from_arrays(table.states, table.units, table.times, derivatives=table.derivatives,
                               name=name, time_unit=table.time_unit, train_fraction=train_fraction)  # fmt: skip

    def __len__(self) -> int:
        return len(self.states)

    @property
    def n_trajectories(self) -> int:
        """Number of trajectories."""
        return len(self.states)

    @property
    def lengths(self) -> tuple[int, ...]:
        """Number of points of each trajectory."""
        return tuple(x.shape[0] for x in self.states)

    @property
    def n_points(self) -> int:
        """Total number of states over all trajectories."""
        return sum(self.lengths)

    @property
    def dims(self) -> int:
        """Number of state variables."""
        return len(self.variables)

    @property
    def n_derivative_samples(self) -> int:
        """Number of rows `derivative_pairs` returns."""
        if self.derivatives is not None:
            return self.n_points
        return self.n_points - self.n_trajectories

    def all_states(self) -> np.ndarray:
        """All states stacked into one ``(n_points, d)`` array, trajectory by trajectory."""
        if not self.states:
            return np.empty((0, self.dims))
        return np.concatenate(self.states)

    def replace(self, **changes: Any) -> Trajectories:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def _select(self, keep: list[int]) -> Trajectories:
        return self.replace(
            states=tuple(self.states[i] for i in keep),
            times=tuple(self.times[i] for i in keep),
            derivatives=None
            if self.derivatives is None
            else tuple(self.derivatives[i] for i in keep),
            split=tuple(self.split[i] for i in keep),
        )

    def subset(self, which: str) -> Trajectories:
        """The trajectories labelled `which` (``"train"`` or ``"test"``), in order."""
        if which not in SPLITS:
            raise UserError(f"unknown split {which!r}; expected 'train' or 'test'")
        return self._select([i for i, s in enumerate(self.split) if s == which])

    def train(self) -> Trajectories:
        """The training trajectories."""
        return self.subset("train")

    def test(self) -> Trajectories:
        """The test trajectories."""
        return self.subset("test")

    def windows(self, length: int, stride: int | None = None) -> Trajectories:
        """Cut every trajectory into windows of `length` points.

        Windows start every `stride` points (default `length`, i.e. disjoint
        windows); a tail shorter than `length` is dropped, and so is a
        trajectory shorter than `length`. Each window keeps the split label of
        its trajectory. With finite-difference derivatives each window gives
        ``length - 1`` samples, so disjoint windows lose the differences that
        straddle window boundaries.
        """
        stride = length if stride is None else stride
        if int(length) != length or length < 2:
            raise UserError(f"window length must be an integer >= 2, got {length}")
        if int(stride) != stride or stride < 1:
            raise UserError(f"window stride must be an integer >= 1, got {stride}")
        states, times, derivs, split = [], [], [], []
        for i, x in enumerate(self.states):
            for start in range(0, x.shape[0] - length + 1, stride):
                piece = slice(start, start + length)
                states.append(x[piece])
                times.append(self.times[i][piece])
                if self.derivatives is not None:
                    derivs.append(self.derivatives[i][piece])
                split.append(self.split[i])
        return self.replace(
            states=tuple(states),
            times=tuple(times),
            derivatives=None if self.derivatives is None else tuple(derivs),
            split=tuple(split),
        )

    def derivative_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Stacked states and dx/dt targets, each ``(n_derivative_samples, d)``.

        With stored derivatives, every state with its target. Otherwise forward
        finite differences ``(x[k+1] - x[k]) / (t[k+1] - t[k])`` paired with
        ``x[k]``, within each trajectory (the last point of each has none).
        """
        if self.derivatives is not None:
            if not self.states:
                return np.empty((0, self.dims)), np.empty((0, self.dims))
            return np.concatenate(self.states), np.concatenate(self.derivatives)
        xs = [x[:-1] for x in self.states]
        dxs = [np.diff(x, axis=0) / np.diff(t)[:, None] for x, t in zip(self.states, self.times)]
        if not xs:
            return np.empty((0, self.dims)), np.empty((0, self.dims))
        return np.concatenate(xs), np.concatenate(dxs)

    def to_torch(self, device: Any = "cpu", dtype: Any = None) -> TorchTrajectories:
        """Padded tensors of all trajectories on `device` (default dtype float64).

        See `TorchTrajectories` for the layout; for flat derivative samples use
        ``torch.as_tensor(a)`` on the arrays of `derivative_pairs`.
        """
        import torch

        dtype = torch.float64 if dtype is None else dtype
        lengths = np.array(self.lengths, dtype=np.int64)
        t_max = int(lengths.max()) if len(lengths) else 0

        def pad(arrays: tuple[np.ndarray, ...]) -> torch.Tensor:
            shape = (len(arrays), t_max) + arrays[0].shape[1:] if arrays else (0, 0, self.dims)
            out = np.empty(shape)
            for i, a in enumerate(arrays):
                out[i, : a.shape[0]] = a
                out[i, a.shape[0] :] = a[-1]
            return torch.as_tensor(out, dtype=dtype, device=device)

        mask = np.arange(t_max)[None, :] < lengths[:, None]
        return TorchTrajectories(
            states=pad(self.states),
            times=pad(self.times)
            if self.times
            else torch.empty((0, 0), dtype=dtype, device=device),
            mask=torch.as_tensor(mask, device=device),
            lengths=torch.as_tensor(lengths, device=device),
            derivatives=None if self.derivatives is None else pad(self.derivatives),
        )

    def summary(self) -> dict[str, int]:
        """Counts per split: trajectories, points and derivative samples."""
        out = {}
        for which in SPLITS:
            part = self.subset(which)
            out[f"{which}_trajectories"] = part.n_trajectories
            out[f"{which}_points"] = part.n_points
            out[f"{which}_derivative_samples"] = part.n_derivative_samples
        return out


def _as_array(a: Any, name: str, what: str, i: int) -> np.ndarray:
    try:
        arr = np.array(a, dtype=np.float64, copy=True, order="C")
    except (TypeError, ValueError) as err:
        raise UserError(f"{name}: trajectory {i}: {what} are not numeric ({err})") from None
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{name}: trajectory {i}: {what} contain NaN or inf")
    return arr
