"""The one place numeric tests take their tolerances from."""

import numpy as np

RTOL = {np.float64: 1e-9, np.float32: 1e-4}


def assert_close(actual, expected, dtype=np.float64, rtol=None, atol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol or RTOL[dtype], atol=atol)
