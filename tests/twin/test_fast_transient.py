"""The transient cascade's caches compute exactly what the plain formulas do, bit for bit.

Every campaign test steps the twin's transient cascade hundreds of times, so the rates that
follow from a layout's temperatures are cached per layout and the propagator keys are formatted
one row at a time; a stored golden value or a resumed journal must not move by one bit.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.records import Conditions
from autolab.twin import TwinConfig
from autolab.twin.chemistry import arrhenius
from autolab.twin.transient import TankInputs, TransientCascade, _key

CFG = TwinConfig()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=9),
       st.sampled_from([6, 9]))
def test_cache_keys_round_like_one_format_per_value(values: list[float], digits: int) -> None:
    slow = tuple(float(f"{v:.{digits}g}") for v in values)
    fast = _key(np.array(values, dtype=np.float64), digits)
    assert len(fast) == len(slow)
    assert all(np.float64(a).tobytes() == np.float64(b).tobytes() or (math.isnan(a)
                                                                      and math.isnan(b))
               for a, b in zip(fast, slow, strict=True))


def test_rates_from_the_layout_cache_equal_a_fresh_derivation() -> None:
    """The per-layout cache returns what the Arrhenius factors give for those temperatures."""
    cascade = TransientCascade(CFG)
    chem = CFG.chemistry
    feed = Conditions(200, 10, 280, 12, 3, 2, t_tank_c=(201.5, 199.0, 203.25))
    lay = TankInputs.feeding(feed).layout(CFG, in_range=False)
    state = cascade.initial()
    for _ in range(6):
        state = cascade.step(state, TankInputs.feeding(feed), 0.5)
    for _ in range(2):  # cold cache, then warm
        rates, decays = cascade._rates(lay, state.fields)
        core = np.arange(cascade.n_tanks) < lay.n_core
        t = lay.temps_c
        assert rates[0] == _key(np.where(core, arrhenius(1.0, chem.ea_conv_kj_mol, t,
                                                         chem.t_ref_core_c), 0.0))
        assert rates[1] == _key(np.where(core, arrhenius(
            chem.k_ripening_ref_per_min, chem.ea_ripening_kj_mol, t, chem.t_ref_core_c), 0.0))
        assert rates[3] == _key(np.where(~core, arrhenius(1.0, chem.ea_alloy_kj_mol, t,
                                                          chem.t_ref_shell_c), 0.0))
        assert rates[4] == _key(np.where(~core, arrhenius(1.0, chem.ea_hot_kj_mol, t,
                                                          chem.t_ref_shell_c) ** 2, 0.0))
        k_s = arrhenius(chem.k_shell_ref_per_min, chem.ea_shell_kj_mol, t, chem.t_ref_shell_c)
        assert decays[2] == _key(np.where(~core, k_s * lay.sulfur, 0.0), 6)
        bins = state.fields["bins"]
        mass = bins[0].sum(axis=1)
        nuc = np.where(mass > 1e-12, bins[1].sum(axis=1) / np.where(mass > 1e-12, mass, 1.0),
                       1.0)
        k = chem.k_conv_ref_per_min * nuc ** chem.surface_rate_exponent \
            * arrhenius(1.0, chem.ea_conv_kj_mol, t, chem.t_ref_core_c)
        assert decays[0] == _key(k, 6)
    assert len(cascade._fixed) == 1


def test_cached_layouts_and_births_step_like_fresh_ones() -> None:
    """A cascade whose layout and birth caches are emptied before every step steps the same."""
    warm, cold = TransientCascade(CFG), TransientCascade(CFG)
    feeds = [TankInputs.feeding(Conditions(200, 10, 280, 12, 3, 2)),
             TankInputs.feeding(Conditions(230, 6, 300, 9, 1.5, 1.2)),
             TankInputs.solvent(5.0, t_tank_c=(200.0,) * 7),
             TankInputs.no_flow(t_tank_c=(150.0,) * 7)]
    a = b = warm.initial()
    for i in range(40):
        inputs = feeds[(i // 6) % len(feeds)]
        a = warm.step(a, inputs, 0.7)
        cold._layouts.clear()
        cold._born.clear()
        cold._fixed.clear()
        b = cold.step(b, inputs, 0.7)
    assert all(a.fields[k].tobytes() == b.fields[k].tobytes() for k in a.fields)
    assert len(warm._layouts) == len(feeds)
    assert len(warm._born) == 2
