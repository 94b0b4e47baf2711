"""Which outcomes the prior models (``BotorchSettings.prior_outcomes``).

The twin prior knows two things about a reactor: where the band lies (the PL peak) and where
the product is bright (QY). On reactors not built from the twin the first is still worth having
(the band comes 2 experiments sooner than from a cold start) but the second is not: the twin's
bright region is elsewhere, so the prior's first in-band product is dimmer than a cold start's
(median QY at 0.57-0.62 of the good-hit bar against 0.72-0.76, design set) and the climb that
follows, on readings clustered where the twin is bright, costs more than the band saved. Each
rule here names, from what has been measured, the outcomes whose GPs keep the prior; the others
are modelled cold (:func:`~autolab.optimizer.prior.PriorSurrogate.only`).

Rules (pure functions of the objective and whether an in-band success exists, so a resumed
campaign models exactly as the uninterrupted one did):

* ``all``: every outcome the prior predicts (the behaviour before this setting).
* ``band``: only the outcomes of the objective's :class:`~autolab.objective.Target` terms, the
  band; every other outcome is cold from the first model-based proposal on.
* ``all_until_band``: every outcome until the first success in every band and constraint, then
  only the band's outcomes: the prior's QY helps to reach a bright part of the band first, and
  the readings alone lead the climb from there.
"""

from __future__ import annotations

from collections.abc import Callable

from autolab.objective import ObjectiveSpec, Target

#: ``(spec, has_in_band) -> outcome names that keep the prior`` per ``prior_outcomes`` value.
PRIOR_OUTCOME_RULES: dict[str, Callable[[ObjectiveSpec, bool], frozenset[str]]] = {
    "all": lambda spec, in_band: frozenset(spec.outcome_names),
    "band": lambda spec, in_band: band_outcomes(spec),
    "all_until_band": lambda spec, in_band: (band_outcomes(spec) if in_band
                                             else frozenset(spec.outcome_names)),
    "band_until_band": lambda spec, in_band: (frozenset(spec.outcome_names) if in_band
                                              else band_outcomes(spec)),
}


def band_outcomes(spec: ObjectiveSpec) -> frozenset[str]:
    """The outcomes of ``spec``'s :class:`~autolab.objective.Target` terms (the band)."""
    return frozenset(t.outcome for t in spec.terms if isinstance(t, Target))


def prior_outcomes(rule: str, spec: ObjectiveSpec, has_in_band: bool) -> frozenset[str]:
    """The outcomes whose GPs take the prior under ``rule`` (a key of the registry).

    Args:
        rule: ``BotorchSettings.prior_outcomes``.
        spec: The objective.
        has_in_band: Whether any success so far met every band and constraint as measured.
    """
    return PRIOR_OUTCOME_RULES[rule](spec, has_in_band)
