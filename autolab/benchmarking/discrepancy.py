"""How far the family's reactors stray from the nominal twin: the yardstick of the twin prior.

The twin prior (``prior: twin``, ``prior_spread: stated``) states how sure the optimizer may be
of the twin once one reading has fixed its offset (``autolab.prior.TWIN_DISCREPANCY_SD``). The
reactor family is a documented prior over the twin's physical constants, so its twin-kind
members are the right yardstick: per member, the discrepancy ``member(x) - twin(x)`` over the
box splits into a constant offset (what the optimizer's learned prior-mean constant takes from
the first reading) and what is left around it (what the discrepancy GP must still allow for).
:func:`discrepancy_spread` measures both, per outcome; ``benchmarks/prior_discrepancy.py``
prints them and a test checks the stated sigmas against them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autolab.benchmarking.family import FloatArray, Member, nominal_member

#: Outcomes measured (the twin prior's outcomes).
OUTCOMES: tuple[str, ...] = ("pl_peak_nm", "fwhm_nm", "qy")


@dataclass(frozen=True)
class Discrepancy:
    """One member's discrepancy from the nominal twin, per outcome (the outcome's units).

    Attributes:
        name: Member name.
        offset: Outcome -> mean of ``member - twin`` over the points both make.
        sd: Outcome -> standard deviation of ``member - twin`` around that offset.
    """

    name: str
    offset: Mapping[str, float]
    sd: Mapping[str, float]


def discrepancy_spread(members: Sequence[Member], x: FloatArray, names: Sequence[str],
                       fixed: Mapping[str, float]) -> list[Discrepancy]:
    """Each member's :class:`Discrepancy` from the nominal twin on points ``x``.

    Args:
        members: Family members.
        x: Physical points ``(n, len(names))`` (inside the space's constraints).
        names: Searched conditions, the columns of ``x``.
        fixed: Conditions not searched.
    """
    twin = nominal_member().truth_points(x, names, fixed)
    out = []
    for member in members:
        truth = member.truth_points(x, names, fixed)
        offset, sd = {}, {}
        for k in OUTCOMES:
            d = np.asarray(getattr(truth, k)) - np.asarray(getattr(twin, k))
            d = d[np.isfinite(d)]
            offset[k], sd[k] = float(d.mean()), float(d.std())
        out.append(Discrepancy(member.name, offset, sd))
    return out


def rms_sd(spreads: Sequence[Discrepancy]) -> dict[str, float]:
    """Outcome -> root mean square over members of the sd around each member's offset."""
    return {k: float(np.sqrt(np.mean([s.sd[k] ** 2 for s in spreads]))) for k in OUTCOMES}
