"""Which outcomes the prior models (``BotorchSettings.prior_outcomes``).

The twin prior knows two things about a reactor: where the band lies (the PL peak) and where
the product is bright (QY). On reactors not built from the twin the first is still worth having
(the band comes sooner than from a cold start) but the second is not: the twin's QY pulls the
band search to where the twin is bright, so the first in-band product is dimmer than a cold
start's (design set, far members: median 0.58 of the good-hit QY bar against 0.72) and comes
from readings clustered there, and the climb that follows costs more than the band saved. Each
rule here names, from what has been measured, the outcomes whose GPs keep the prior; the others
are modelled cold (:meth:`~autolab.optimizer.prior.PriorSurrogate.only`). Screened in
docs/benchmarks.md "Which outcomes take the twin prior": ``band`` found as many far good hits
as a cold start on the design set (10/12) but not held out (8/12 against 10/12), and it halves
the near members' gain, so the default stays ``all``.

Rules (pure functions of the objective and whether an in-band success exists, so a resumed
campaign models exactly as the uninterrupted one did):

* ``all``: every outcome the prior predicts (the behaviour before this setting).
* ``band``: only the outcomes of the objective's :class:`~autolab.objective.Target` terms, the
  band; every other outcome is cold from the first model-based proposal on.
* ``all_until_band``: every outcome until the first success in every band and constraint, then
  only the band's outcomes: the prior's QY helps to reach a bright part of the band first, and
  the readings alone lead the climb from there.
* ``band_until_band``: the band's outcomes until then, every outcome after it (the guard, when
  on, still decides per outcome): the band search is not pulled to where the prior is bright,
  and the climb keeps the prior's QY where the readings agree with it.
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
