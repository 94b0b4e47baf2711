"""Which streamed reading stands for a dynamic trial (``dynamic.representative``).

Readings come from a real ramp on the simulated rig through the real analyzer and mapping; the
contested cases move a real reading's features and sigmas (data, not a stand-in).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest

from autolab.config import load_campaign
from autolab.dynamic import DynamicObservation, MappingPolicy, RampLimits, plan_ramp
from autolab.dynamic.represent import (
    REPRESENTATIVES,
    cautious,
    cautious_outcomes,
    full_weight_first,
)
from autolab.dynamic_config import REPRESENTATIVE_RULES, DynamicConfig
from autolab.executors.ramp import cascade_geometry
from autolab.executors.simulated import SimulatedExecutor
from autolab.objective import Maximize, ObjectiveSpec, OutcomeConstraint, Target
from autolab.records import Conditions

from .test_dynamic_campaign import _observed

ROOT = Path(__file__).resolve().parents[2]
OBJECTIVE = load_campaign(ROOT / "campaigns" / "target_550nm_dynamic.yaml").objective
A = Conditions(t_core_c=185, tau_core_min=15, t_shell_c=270, tau_shell_min=20, cl_to_i=2,
               s_to_zn=2, p_to_in=3.6)
B = Conditions(t_core_c=195, tau_core_min=15, t_shell_c=285, tau_shell_min=20, cl_to_i=2,
               s_to_zn=2, p_to_in=3.6)


@pytest.fixture(scope="module")
def stream() -> tuple[DynamicObservation, ...]:
    """A real ramp's readings: settled at A, ramped to B at the full-weight caps, held."""
    ex = SimulatedExecutor(seed=5)
    limits = RampLimits.for_reactor(heating_c_per_min=10, cooling_c_per_min=5)
    caps = MappingPolicy().rate_caps(A, cascade_geometry(ex.session, A))
    m = ex.run_trajectory(plan_ramp(A, B, limits.tightened(caps), hold_end_min=10), limits,
                          frame_interval_min=2.0)
    return _observed(ex, m)


def _reading(o: DynamicObservation, pl: float, qy: float, sd_pl: float, weight: float
             ) -> DynamicObservation:
    return replace(o, features={**o.features, "pl_peak_nm": pl, "qy": qy, "fwhm_nm": 40.0},
                   sigma={**o.sigma, "pl_peak_nm": sd_pl, "qy": 0.01, "fwhm_nm": 0.5},
                   weight=weight, accepted=True)


def test_rules_match_the_setting() -> None:
    assert set(REPRESENTATIVES) == set(REPRESENTATIVE_RULES) == set(
        get_args(DynamicConfig.model_fields["representative"].annotation))
    assert DynamicConfig().representative == "full_weight_first"  # the default is unchanged


def test_both_rules_pick_an_accepted_reading_of_a_real_stream(
        stream: tuple[DynamicObservation, ...]) -> None:
    assert sum(o.accepted for o in stream) > 5
    for rule in REPRESENTATIVES.values():
        i = rule(stream, OBJECTIVE)
        assert i is not None and stream[i].accepted
    refused = tuple(replace(o, accepted=False, weight=0.0) for o in stream)
    assert full_weight_first(refused, OBJECTIVE) is None and cautious(refused, OBJECTIVE) is None


def test_a_down_weighted_reading_in_band_beats_a_sharp_one_out_of_band_only_when_cautious(
        stream: tuple[DynamicObservation, ...]) -> None:
    """The twin-nominal 550 nm case: one full-weight reading of old fluid, out of band, and
    down-weighted readings near the proposal, in band even at one sigma against the band."""
    sharp = _reading(stream[0], pl=553.5, qy=0.50, sd_pl=0.3, weight=1.0)
    mixed = _reading(stream[1], pl=550.2, qy=0.40, sd_pl=1.2, weight=0.4)
    pair = (sharp, mixed)
    assert full_weight_first(pair, OBJECTIVE) == 0
    assert cautious(pair, OBJECTIVE) == 1
    # a mixture in band only by its noise (one sigma takes it out) loses to a sharp reading
    # in band
    edge = _reading(stream[1], pl=551.5, qy=0.60, sd_pl=1.2, weight=0.4)
    inside = _reading(stream[0], pl=550.5, qy=0.45, sd_pl=0.3, weight=1.0)
    assert cautious((edge, inside), OBJECTIVE) == 1


def test_among_equal_readings_the_sharper_wins(stream: tuple[DynamicObservation, ...]) -> None:
    a = _reading(stream[0], pl=550.0, qy=0.42, sd_pl=0.3, weight=1.0)
    b = replace(_reading(stream[1], pl=550.0, qy=0.43, sd_pl=0.3, weight=0.3),
                sigma={**a.sigma, "qy": 0.05})  # brighter as read, by less than its noise
    assert cautious((a, b), OBJECTIVE) == 0
    assert full_weight_first((b, replace(a, weight=0.5)), OBJECTIVE) == 0  # b reads brighter


def test_cautious_outcomes_move_each_outcome_one_sigma_against_its_term(
        stream: tuple[DynamicObservation, ...]) -> None:
    o = _reading(stream[0], pl=549.0, qy=0.40, sd_pl=0.5, weight=1.0)
    worse = cautious_outcomes(o, OBJECTIVE)
    assert worse["pl_peak_nm"] == pytest.approx(548.5)  # away from 550
    assert worse["qy"] == pytest.approx(0.39)  # maximized: down
    assert worse["fwhm_nm"] == pytest.approx(40.5)  # minimized: up
    above = cautious_outcomes(replace(o, features={**o.features, "pl_peak_nm": 551.0}),
                              OBJECTIVE)
    assert above["pl_peak_nm"] == pytest.approx(551.5)
    spec = ObjectiveSpec(terms=(Target(outcome="pl_peak_nm", value=550, tolerance=2),),
                         constraints=(OutcomeConstraint(outcome="qy", op=">=", bound=0.3),
                                      OutcomeConstraint(outcome="fwhm_nm", op="<=", bound=50)))
    c = cautious_outcomes(o, spec)
    assert c["qy"] == pytest.approx(0.39) and c["fwhm_nm"] == pytest.approx(40.5)
    only_qy = ObjectiveSpec(terms=(Maximize(outcome="qy"),))
    assert cautious_outcomes(o, only_qy) == {"qy": pytest.approx(0.39)}
