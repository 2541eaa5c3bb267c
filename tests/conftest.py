import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

PENDULUM_UNITS = {"q": "rad", "p": "kg*m**2/s"}
SPRING_UNITS = {"q": "m", "p": "kg*m/s"}


@pytest.fixture(scope="session")
def pendulum_set():
    import dsl

    return dsl.FormulaSet.enumerate(PENDULUM_UNITS, 7)


@pytest.fixture(scope="session")
def spring_set():
    import dsl

    return dsl.FormulaSet.enumerate(SPRING_UNITS, 7)
