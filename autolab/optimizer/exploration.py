"""How far the band-first acquisition looks beyond the band it must finally hit (issue 8 §2).

Measured on the reactor family with the defaults: the search reaches the target band at about
the 8th experiment and then crawls along it, and where it misses a good hit it ends at 0.6-0.9
of the QY needed. The band enters the acquisition as ``log P(band)`` (``acquisition.log_p_band``).
Away from the data the PL posterior sd (3-10 nm against a ±2 nm band) caps that probability
at ``~ 2 t / (sqrt(2 pi) sd)``, so the known in-band neighbourhood always outscores a place
whose PL is unknown, and QY is never learned there.

:class:`BandSlack` widens every target band *in the acquisition only* by a share of its
tolerance plus a multiple of the target outcome's posterior sd (a UCB-style optimism about the
band: "the peak could be within ``t + k sd`` of the target"), optionally shrinking linearly to
zero by a given experiment. A reading just off the band at high QY teaches both GPs there, and a
control that moves the peak (halide ratio, core temperature) then carries that QY onto the band.
The measured ranking of experiments ("best", the incumbent, the forecast) keeps the true band.
Measured (docs/benchmarks.md "Optimizer choices", third round): with ``sd`` 1 half of the
experiments after the design land in band instead of three quarters, and good hits rise from
26/36 to 30/36 on the design set, 24/35 to 25/35 held out; off by default.

Pure functions of the settings and the number of experiments told.
"""

from __future__ import annotations

from dataclasses import dataclass

from autolab.exceptions import OptimizerError


@dataclass(frozen=True)
class BandSlack:
    """Extra half-width of every target band in the acquisition's band probability.

    Attributes:
        tolerances: Fixed extra half-width as a multiple of each target's own tolerance (unit
            free, so one value serves a ±2 nm peak and any other target).
        sd: Extra half-width as a multiple of the target outcome's posterior sd at the
            candidate: large where the peak is unknown, nothing where it is known.
    """

    tolerances: float
    sd: float

    def __post_init__(self) -> None:
        for name in ("tolerances", "sd"):
            value = getattr(self, name)
            if not (value >= 0.0 and value < float("inf")):
                raise OptimizerError(f"BandSlack.{name} must be a finite number >= 0, "
                                     f"got {value!r}")


def band_slack(tolerances: float, sd: float, until: int | None, n_told: int) -> BandSlack | None:
    """The slack of the next proposal, or ``None`` when there is none (the plain band).

    Args:
        tolerances: ``BotorchSettings.band_slack_tolerances``.
        sd: ``BotorchSettings.band_slack_sd``.
        until: ``BotorchSettings.band_slack_until``: the slack shrinks linearly from its full
            value before the first experiment to zero at this many experiments told; ``None``
            keeps it whole.
        n_told: Experiments of this campaign told so far (failed ones included).

    Returns:
        The scaled slack, or ``None`` once it is zero, so the default path is untouched.
    """
    if n_told < 0:
        raise OptimizerError(f"n_told must be >= 0, got {n_told!r}")
    decay = 1.0 if until is None else max(0.0, 1.0 - n_told / until)
    if decay == 0.0 or (tolerances == 0.0 and sd == 0.0):
        return None
    return BandSlack(tolerances=tolerances * decay, sd=sd * decay)
