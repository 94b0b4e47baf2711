"""Prior knowledge for the optimizer, built from the digital twin (issue 8 §4).

The optimizer package may not import the twin (the sibling-independence contract), so it takes
any :class:`~autolab.optimizer.prior.OutcomePrior`; this module, one layer up, builds the one a
lab wants most: the twin's noise-free response (the vectorized ``truth_features`` fast path) for
the searched conditions, with the unsearched ones at their fixed or default values. The
optimizer turns it into a learned-weight prior mean of its GPs and models the real reactor's
discrepancy from it (see :mod:`autolab.optimizer.prior`).

From plain Python::

    from autolab.optimizer import BotorchOptimizer
    from autolab.prior import twin_prior
    from autolab.twin import TwinConfig

    opt = BotorchOptimizer(space, objective, seed=0, prior="twin",
                           outcome_prior=twin_prior(TwinConfig(), fixed={"p_to_in": 3.6}))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConfigError
from autolab.optimizer.prior import check_spread
from autolab.records import Conditions
from autolab.twin import TwinConfig, truth_features
from autolab.twin.chemistry import ConditionArrays

#: Conditions in the twin's column order, with the unit each is read in.
TWIN_PARAMETERS: dict[str, str] = {
    "t_core_c": "°C", "tau_core_min": "min", "t_shell_c": "°C", "tau_shell_min": "min",
    "cl_to_i": "", "s_to_zn": "", "p_to_in": "",
}

#: Outcomes the twin prior predicts (noise-free truth).
TWIN_OUTCOMES: tuple[str, ...] = ("pl_peak_nm", "fwhm_nm", "qy")

#: How far a real reactor strays from the nominal twin around a constant offset, 1-sigma per
#: outcome: the reactor family's twin-kind design members (8 of them, 2048-point Sobol sample of
#: the box; ``benchmarks/prior_discrepancy.py``) give rms sds of 6.8 nm PL, 1.4 nm FWHM and
#: 0.048 QY around offsets of rms 21 nm, 4.8 nm and 0.05. Members not built from the twin (rff,
#: additive) stray 2.5-3x further; the optimizer learns that from their readings.
TWIN_DISCREPANCY_SD: dict[str, float] = {"pl_peak_nm": 7.0, "fwhm_nm": 1.5, "qy": 0.05}


class TwinPrior:
    """The twin's noise-free outcomes as an :class:`~autolab.optimizer.prior.OutcomePrior`.

    Args:
        config: The twin configuration taken as prior knowledge (normally the nominal twin).
        fixed: Values of conditions the campaign does not search (e.g. ``{"p_to_in": 3.6}``);
            conditions neither searched nor fixed take :class:`~autolab.records.Conditions`'
            defaults.
        discrepancy_sd: Outcome -> 1-sigma of a real reactor's discrepancy from this twin
            around a constant offset (``prior_spread: stated`` reads it); default
            :data:`TWIN_DISCREPANCY_SD`, measured on the reactor family.

    Raises:
        ConfigError: A fixed name is not a twin condition, or its value is not finite; a
            discrepancy sigma names an outcome the twin does not predict or is not > 0.
    """

    name = "twin"
    parameters = TWIN_PARAMETERS
    outcomes = TWIN_OUTCOMES

    def __init__(self, config: TwinConfig, fixed: Mapping[str, float] | None = None,
                 discrepancy_sd: Mapping[str, float] | None = None) -> None:
        self.config = config
        self.fixed = dict(fixed or {})
        self.discrepancy_sd: Mapping[str, float] = (TWIN_DISCREPANCY_SD if discrepancy_sd is None
                                                    else discrepancy_sd)
        check_spread(self)
        self.discrepancy_sd = dict(self.discrepancy_sd)
        for key, value in self.fixed.items():
            if key not in TWIN_PARAMETERS:
                raise ConfigError(f"twin prior: fixed condition {key!r} is not a twin condition; "
                                  f"expected one of {list(TWIN_PARAMETERS)}")
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"twin prior: fixed condition {key!r} = {value!r} must be a "
                                  "finite number")
        self._defaults = {f.name: float(f.default) for f in fields(Conditions)
                          if f.default is not MISSING and isinstance(f.default, int | float)}

    def __call__(self, points: Sequence[Mapping[str, float]]) -> dict[str, NDArray[np.float64]]:
        """Noise-free twin outcomes for ``points`` (searched values; the rest fixed/default).

        Raises:
            ConfigError: A point names a condition the twin does not know, or leaves one unset.
        """
        cols = {}
        for name in TWIN_PARAMETERS:
            try:
                cols[name] = np.array([float({**self._defaults, **self.fixed, **p}[name])
                                       for p in points], dtype=np.float64)
            except KeyError:
                raise ConfigError(f"twin prior: condition {name!r} is neither searched nor "
                                  "fixed and has no default") from None
        unknown = sorted({k for p in points for k in p} - set(TWIN_PARAMETERS))
        if unknown:
            raise ConfigError(f"twin prior: unknown condition(s) {unknown}; the twin takes "
                              f"{list(TWIN_PARAMETERS)}")
        truth = truth_features(ConditionArrays(**cols), self.config)
        return {name: np.asarray(getattr(truth, name), dtype=np.float64) for name in TWIN_OUTCOMES}


def twin_prior(config: TwinConfig | None = None,
               fixed: Mapping[str, float] | None = None,
               discrepancy_sd: Mapping[str, float] | None = None) -> TwinPrior:
    """The twin prior of ``config`` (default: the nominal twin); see :class:`TwinPrior`."""
    return TwinPrior(config or TwinConfig(), fixed, discrepancy_sd)
