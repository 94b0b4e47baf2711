"""The simulated rig's realization of a setpoint is memoized per run, with the same values.

The reactor asks for the realized feed on every step of the tanks while the same pumps and
blocks run; the memo must hand back exactly what a fresh realization gives.
"""

from __future__ import annotations

import numpy as np

from autolab.executors.simulated import _realizer
from autolab.records import Conditions
from autolab.twin import TwinConfig

CFG = TwinConfig()


def test_memoized_realization_equals_a_fresh_one() -> None:
    setpoint = Conditions(200, 10, 280, 12, 3, 2)
    realized = Conditions(201.3, 10.2, 278.9, 11.9, 3.05, 1.98)
    memo = _realizer(setpoint, realized, CFG)
    feeds = [setpoint, Conditions(180, 13, 290, 15, 6, 2, t_tank_c=(181.0, 179.5, 180.0)),
             Conditions(230, 6, 300, 9, 1.5, 1.2)]
    for c in feeds * 3:
        fresh = _realizer(setpoint, realized, CFG)(c)
        got = memo(c)
        assert got == fresh
        assert all(np.float64(v).tobytes() == np.float64(fresh.as_dict()[k]).tobytes()
                   for k, v in got.as_dict().items())
    assert memo(feeds[0]) is memo(feeds[0])
