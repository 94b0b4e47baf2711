"""The twin's line shapes over all size nodes at once equal the per-node sums, bit for bit.

The simulated rig renders the outlet's absorbance and emission for every detector frame; the
size nodes' line shapes are evaluated in one array operation per block of rows instead of one
node at a time. A stored golden value or a resumed journal must not move by one bit, so the
reference here is the per-node form the fast one replaced.
"""

from __future__ import annotations

import numpy as np
import pytest

from autolab.twin import TwinConfig, optics
from autolab.twin.chemistry import CoreState, ShellState
from autolab.twin.config import ChemistryParams, OpticsParams

CFG = TwinConfig()


def _states(rng: np.random.Generator, n: int) -> tuple[CoreState, ShellState]:
    core = CoreState(mean_edge_a=rng.uniform(15, 45, n), size_cv=rng.uniform(0.03, 0.3, n),
                     conversion=rng.uniform(0.1, 1, n), nuclei_rel=rng.uniform(0.3, 3, n),
                     residual_precursor=rng.uniform(0, 0.2, n))
    shell = ShellState(shell_ml=rng.uniform(0, 4, n), alloy_a=rng.uniform(0, 3, n),
                       qy_band=rng.uniform(0, 0.8, n), qy_trap=rng.uniform(0, 0.1, n),
                       sigma_extra_ev=rng.uniform(0, 0.05, n))
    return core, shell


def _nodes(wl: np.ndarray, core: CoreState, shell: ShellState, chem: ChemistryParams,
           opt: OpticsParams, *, emission: bool) -> tuple[np.ndarray, ...]:
    """Grid (2-D), photon energies, the nodes' centres, widths and weights (as optics has them)."""
    wl2 = wl if wl.ndim == 2 else wl[None, :]
    e_abs, e_pl, sig_k, w = optics.kernel_nodes(core, shell, chem, opt)
    centre = e_pl if emission else e_abs
    sig = np.sqrt(optics.homogeneous_sigma_ev(centre, opt) ** 2
                  + shell.sigma_extra_ev[:, None] ** 2 + sig_k ** 2)
    return wl2, optics.HC_EV_NM / wl2, centre, sig, w


def _absorbance_per_node(wl: np.ndarray, core: CoreState, shell: ShellState,
                         chem: ChemistryParams, opt: OpticsParams) -> np.ndarray:
    """The line-shape sum one size node at a time (the form before the fast path)."""
    wl2, e, e_abs, sig, w = _nodes(wl, core, shell, chem, opt, emission=False)
    out = np.zeros((e_abs.shape[0], e.shape[1]))
    for k in range(e_abs.shape[1]):
        mu, s = e_abs[:, k:k + 1], sig[:, k:k + 1]
        peak1 = np.exp(-0.5 * ((e - mu) / s) ** 2)
        peak2 = opt.second_rel * np.exp(-0.5 * ((e - mu - opt.second_transition_ev)
                                                / (1.5 * s)) ** 2)
        cont = opt.continuum_rel / (1.0 + np.exp(-(e - mu - opt.continuum_onset_ev)
                                                 / opt.continuum_width_ev))
        out += w[k] * (peak1 + peak2 + cont)
    return out + opt.scatter_rel * (400.0 / wl2) ** 4


def _emission_per_node(wl: np.ndarray, core: CoreState, shell: ShellState,
                       chem: ChemistryParams, opt: OpticsParams) -> np.ndarray:
    wl2, e, e_pl, sig, w = _nodes(wl, core, shell, chem, opt, emission=True)
    band = np.zeros((e_pl.shape[0], e.shape[1]))
    for k in range(e_pl.shape[1]):
        band += w[k] * optics._gauss(e, e_pl[:, k:k + 1], sig[:, k:k + 1])
    trap = optics._gauss(e, (e_pl @ w - chem.trap_offset_ev)[:, None],
                         np.full((e_pl.shape[0], 1), chem.trap_sigma_ev))
    return (shell.qy_band[:, None] * band + shell.qy_trap[:, None] * trap) \
        * (optics.HC_EV_NM / wl2 ** 2)


@pytest.mark.parametrize("block", [1 << 20, 13 * 97, 13 * 97 * 3 + 5])
@pytest.mark.parametrize("per_row_grid", [False, True])
def test_line_shapes_equal_the_per_node_sums_bit_for_bit(
        monkeypatch: pytest.MonkeyPatch, block: int, per_row_grid: bool) -> None:
    rng = np.random.default_rng(block + per_row_grid)
    monkeypatch.setattr(optics, "_BLOCK_ELEMENTS", block)
    for n in (1, 2, 7, 40):
        core, shell = _states(rng, n)
        wl = (rng.uniform(450, 650, (n, 1)) + np.arange(-60.0, 61.0, 1.25)[None, :]
              if per_row_grid else np.linspace(300.0, 800.0, 97))
        fast_a = optics.absorbance_shape(wl, core, shell, CFG.chemistry, CFG.optics)
        slow_a = _absorbance_per_node(wl, core, shell, CFG.chemistry, CFG.optics)
        fast_e = optics.emission_per_nm(wl, core, shell, CFG.chemistry, CFG.optics)
        slow_e = _emission_per_node(wl, core, shell, CFG.chemistry, CFG.optics)
        assert fast_a.tobytes() == slow_a.tobytes()
        assert fast_e.tobytes() == slow_e.tobytes()
