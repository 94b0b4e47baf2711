"""A family of reactors to benchmark on, instead of one twin.

An optimizer tuned on one simulator learns that simulator. A lab runs it on a reactor that matches
no simulator, so strategies are designed and judged on a *family*: many reactors drawn, seeded,
from a documented prior. Three kinds of member:

* ``twin``: the digital twin with its physical constants drawn around the calibrated values
  (:data:`TWIN_PRIOR`: activation energies, sizing-curve offset and coefficient, halide-effect
  strength, shell kinetics, strain and trap terms, clogging thresholds) and its noise levels drawn
  too (:func:`draw_noise`).
* ``rff``: a response *not* built from the twin: linear trends with the chemistry's signs plus a
  smooth random function (random Fourier features of a squared-exponential GP), and a QY hill
  whose optimum lies anywhere in the box (:class:`RFFResponse`).
* ``additive``: another non-twin response: sums of random monotone sigmoid steps per condition
  (non-stationary), a core-temperature x halide interaction, and a QY that is a product of random
  one-dimensional bumps times a size penalty (:class:`AdditiveResponse`).

Trend signs shared by all kinds (the seed paper's): more Cl (higher Cl:I) -> red; hotter or longer
core -> bigger dots -> red; hotter shell -> slightly blue (interface alloying); more P:In -> more
nuclei -> blue; the QY has an interior optimum in shell temperature and S:Zn. Every member fails in
the same corners as the real reactor (clogging when the core runs hot and long, or when excess
sulfur meets a hot shell; no emission below a QY floor), with member-drawn thresholds.

A non-twin member still produces raw spectra the analyzer reads: :class:`ResponseTwin` is the
twin's physics with the chemistry swapped for the response, run by the same procedure on the same
simulated rig as the twin (clock, flush, heater ramps, settling trace, condition jitter,
detector noise, failure draws, reagent totals); its
spectra are rendered from the response's PL peak, FWHM, QY and a first-exciton band through the
twin's optics and detector functions.

Members are split by seed: seeds below :data:`HELDOUT_SEED_BASE` are the *design* set (tune on
them), seeds from it on are the *held-out* set (report on them). The prior is wide on purpose:
see ``docs/benchmarks.md`` for the measured spread (PL at the nominal 550-nm conditions across
members, and where each member's best-QY point lies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from autolab.constants import HC_EV_NM
from autolab.executors.simulated import SimulatedExecutor
from autolab.records import Conditions, QYReference
from autolab.space import QD_PARAMETERS
from autolab.twin import DigitalTwin, GroundTruth, TwinConfig
from autolab.twin.cascade import throughput_g_h
from autolab.twin.chemistry import ConditionArrays, failure_probabilities
from autolab.twin.model import features_from_states, states

FloatArray = NDArray[np.float64]

#: Kinds of family member (``custom``: a response model of the user's, :mod:`.custom`).
MemberKind = Literal["twin", "rff", "additive", "custom"]
#: The kinds this module draws (a prior each).
DrawnKind = Literal["twin", "rff", "additive"]
MEMBER_KINDS: tuple[DrawnKind, ...] = ("twin", "rff", "additive")
#: Which set a member belongs to.
Split = Literal["design", "heldout"]
#: Seeds from this one on are the held-out set; below it, the design set.
HELDOUT_SEED_BASE = 10_000
#: Condition order of the vectorized truth (the columns of ``(n, 7)`` matrices).
CONDITION_ORDER: tuple[str, ...] = ("t_core_c", "tau_core_min", "t_shell_c", "tau_shell_min",
                                    "cl_to_i", "s_to_zn", "p_to_in")
#: Conditions with a default (``p_to_in``), used when neither searched nor fixed.
_DEFAULTS: dict[str, float] = {f.name: float(f.default) for f in fields(Conditions)
                               if f.default is not MISSING and f.name in CONDITION_ORDER}
#: Stable code per kind in the member's random stream (so kinds never share draws).
_KIND_CODE: dict[str, int] = {"twin": 101, "rff": 202, "additive": 303}
#: Detector-window limits a rendered spectrum must stay within, nm.
PL_LIMITS_NM = (380.0, 820.0)


# --------------------------------------------------------------------------------- truth
@dataclass(frozen=True, eq=False)
class TruthArrays:
    """Noise-free product of ``n`` condition sets, arrays ``(n,)``.

    Attributes:
        pl_peak_nm: PL peak, nm.
        fwhm_nm: PL full width at half maximum, nm.
        qy: Quantum yield, fraction.
        p_fail: Probability that an experiment at these conditions fails (clogging or no
            emission): the dense search counts only points a reactor can actually make.
    """

    pl_peak_nm: FloatArray
    fwhm_nm: FloatArray
    qy: FloatArray
    p_fail: FloatArray


def condition_matrix(x: FloatArray, names: Sequence[str],
                     fixed: Mapping[str, float]) -> ConditionArrays:
    """Searched columns ``x`` ``(n, len(names))`` plus fixed values, as condition arrays."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    cols = []
    for name in CONDITION_ORDER:
        if name in names:
            cols.append(x[:, list(names).index(name)])
        elif name in fixed or name in _DEFAULTS:
            cols.append(np.full(len(x), float(fixed.get(name, _DEFAULTS.get(name, math.nan)))))
        else:
            raise ValueError(f"condition {name!r} is neither searched nor fixed")
    return ConditionArrays.from_matrix(np.column_stack(cols))


def unit_coordinates(c: ConditionArrays) -> FloatArray:
    """Conditions in the catalog's unit cube ``(n, 7)`` (log scale where the catalog says so).

    Not clipped: jittered conditions just outside the box extrapolate smoothly.
    """
    return np.column_stack([QD_PARAMETERS[n].to_unit(getattr(c, n)) for n in CONDITION_ORDER])


def _gate(x: FloatArray, x0: float, width: float) -> FloatArray:
    """Logistic switch in the relative distance past ``x0`` (the twin's clog-gate shape)."""
    z = np.clip(-(np.asarray(x) / x0 - 1.0) / width, -60.0, 60.0)
    return np.asarray(1.0 / (1.0 + np.exp(z)), dtype=np.float64)


# --------------------------------------------------------------------------------- responses
@dataclass(frozen=True)
class Corners:
    """Where a non-twin member fails: the twin's two clogging corners, thresholds drawn.

    Attributes:
        t_core_c: Core temperature above which (together with ``tau_core_min``) InP clogs.
        tau_core_min: Core residence above which (with ``t_core_c``) InP clogs.
        s_to_zn: S:Zn above which (with ``t_shell_c``) ZnS clogs.
        t_shell_c: Shell temperature above which (with ``s_to_zn``) ZnS clogs.
        width: Relative softness of the thresholds.
        min_qy: Below this QY there is no emission to measure.
    """

    t_core_c: float
    tau_core_min: float
    s_to_zn: float
    t_shell_c: float
    width: float = 0.01
    min_qy: float = 0.005

    def clog(self, c: ConditionArrays) -> FloatArray:
        """Probability of clogging per condition set."""
        hot_core = _gate(c.t_core_c, self.t_core_c, self.width) \
            * _gate(c.tau_core_min, self.tau_core_min, self.width)
        zns = _gate(c.s_to_zn, self.s_to_zn, self.width) \
            * _gate(c.t_shell_c, self.t_shell_c, self.width)
        return np.asarray(1.0 - (1.0 - hot_core) * (1.0 - zns), dtype=np.float64)


def _draw_corners(rng: np.random.Generator) -> Corners:
    return Corners(t_core_c=float(rng.uniform(206.0, 218.0)),
                   tau_core_min=float(rng.uniform(18.0, 27.0)),
                   s_to_zn=float(rng.uniform(3.3, 3.8)),
                   t_shell_c=float(rng.uniform(302.0, 316.0)))


class Response(Protocol):
    """A non-twin chemistry: noise-free product of conditions, vectorized."""

    @property
    def corners(self) -> Corners:
        """Where it fails."""
        ...

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(pl_peak_nm, fwhm_nm, qy)`` per condition set, each ``(n,)``."""
        ...


@dataclass(frozen=True)
class RFF:
    """A smooth random function: random Fourier features of a squared-exponential GP draw.

    ``f(u) = sqrt(2/M) Σ_m a_m cos(ω_m·u + b_m)`` with ``ω ~ N(0, 1/ℓ²)``, ``a ~ N(0, 1)``:
    unit prior variance, length scale ``ℓ`` in the unit cube.
    """

    omega: tuple[tuple[float, ...], ...]
    phase: tuple[float, ...]
    weight: tuple[float, ...]

    @classmethod
    def draw(cls, rng: np.random.Generator, dim: int, lengthscale: float,
             n_features: int = 48) -> RFF:
        """Draw one function of ``dim`` unit-cube inputs."""
        omega = rng.standard_normal((n_features, dim)) / lengthscale
        return cls(omega=tuple(map(tuple, omega.tolist())),
                   phase=tuple(rng.uniform(0.0, 2 * math.pi, n_features).tolist()),
                   weight=tuple(rng.standard_normal(n_features).tolist()))

    def __call__(self, u: FloatArray) -> FloatArray:
        """Values at unit-cube points ``(n, dim)``."""
        proj = u @ np.asarray(self.omega).T + np.asarray(self.phase)
        out = math.sqrt(2.0 / len(self.phase)) * np.cos(proj) @ np.asarray(self.weight)
        return np.asarray(out, dtype=np.float64)


#: PL trend per unit-cube step of each condition, nm: (low, high) of a uniform draw, with the
#: chemistry's sign (Cl:I dominates; hotter shell and more P:In blue-shift).
_PL_TREND_NM: dict[str, tuple[float, float]] = {
    "t_core_c": (6.0, 25.0), "tau_core_min": (4.0, 18.0), "t_shell_c": (-14.0, -2.0),
    "tau_shell_min": (0.0, 8.0), "cl_to_i": (120.0, 165.0), "s_to_zn": (-4.0, 4.0),
    "p_to_in": (-16.0, -2.0)}


def _draw_trend(rng: np.random.Generator) -> FloatArray:
    return np.array([rng.uniform(*_PL_TREND_NM[n]) for n in CONDITION_ORDER])


def _qy_from_latent(z: FloatArray, qy_max: float) -> FloatArray:
    return np.asarray(qy_max / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))), dtype=np.float64)


@dataclass(frozen=True)
class RFFResponse:
    """Linear trends with the chemistry's signs plus GP-like wiggles; a QY hill anywhere.

    PL = ``pl0 + trend·u + a_pl·f_pl(u)``; FWHM = ``fwhm0 + a_fwhm·f_fwhm(u)``; QY = ``qy_max ·
    sigmoid(z0 - Σ((u - centre)/width)² + a_qy·f_qy(u))`` with ``u`` the unit-cube conditions.
    """

    pl0_nm: float
    trend_nm: tuple[float, ...]
    pl_wiggle_nm: float
    fwhm0_nm: float
    fwhm_wiggle_nm: float
    qy_max: float
    qy_z0: float
    qy_centre: tuple[float, ...]
    qy_width: tuple[float, ...]
    qy_wiggle: float
    f_pl: RFF
    f_fwhm: RFF
    f_qy: RFF
    corners: Corners

    @classmethod
    def draw(cls, rng: np.random.Generator) -> RFFResponse:
        """One member's response (see :data:`FAMILY_PRIOR_TEXT` for the prior)."""
        dim = len(CONDITION_ORDER)
        return cls(
            pl0_nm=float(rng.uniform(450.0, 480.0)), trend_nm=tuple(_draw_trend(rng).tolist()),
            pl_wiggle_nm=float(rng.uniform(4.0, 12.0)), fwhm0_nm=float(rng.uniform(46.0, 60.0)),
            fwhm_wiggle_nm=float(rng.uniform(1.5, 5.0)), qy_max=float(rng.uniform(0.35, 0.75)),
            qy_z0=float(rng.uniform(0.5, 2.0)),
            qy_centre=tuple(rng.uniform(0.1, 0.9, dim).tolist()),
            qy_width=tuple(rng.uniform(0.35, 1.2, dim).tolist()),
            qy_wiggle=float(rng.uniform(0.3, 1.0)),
            f_pl=RFF.draw(rng, dim, float(rng.uniform(0.35, 0.7))),
            f_fwhm=RFF.draw(rng, dim, float(rng.uniform(0.4, 0.8))),
            f_qy=RFF.draw(rng, dim, float(rng.uniform(0.3, 0.6))),
            corners=_draw_corners(rng))

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(pl_peak_nm, fwhm_nm, qy)`` per condition set."""
        u = unit_coordinates(c)
        pl = self.pl0_nm + u @ np.asarray(self.trend_nm) + self.pl_wiggle_nm * self.f_pl(u)
        fwhm = np.maximum(self.fwhm0_nm + self.fwhm_wiggle_nm * self.f_fwhm(u), 25.0)
        dist = (((u - np.asarray(self.qy_centre)) / np.asarray(self.qy_width)) ** 2).sum(axis=1)
        z = self.qy_z0 - dist + self.qy_wiggle * self.f_qy(u)
        return pl, fwhm, _qy_from_latent(z, self.qy_max)


@dataclass(frozen=True)
class Steps:
    """A random monotone function of one unit coordinate: a weighted sum of sigmoid steps.

    Normalized to 0 at ``u = 0`` and 1 at ``u = 1`` so its scale is the trend's.
    """

    centres: tuple[float, ...]
    slopes: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int = 3) -> Steps:
        """Draw ``n`` steps: centres anywhere in the box, slopes from gentle to sharp."""
        return cls(centres=tuple(rng.uniform(0.0, 1.0, n).tolist()),
                   slopes=tuple(rng.uniform(3.0, 15.0, n).tolist()),
                   weights=tuple(rng.dirichlet(np.ones(n)).tolist()))

    def _raw(self, u: FloatArray) -> FloatArray:
        c, s, w = (np.asarray(v) for v in (self.centres, self.slopes, self.weights))
        return np.asarray((w / (1.0 + np.exp(-s * (u[..., None] - c)))).sum(axis=-1))

    def __call__(self, u: FloatArray) -> FloatArray:
        """Values at unit coordinates (any shape)."""
        lo, hi = self._raw(np.zeros(1))[0], self._raw(np.ones(1))[0]
        return np.asarray((self._raw(u) - lo) / (hi - lo), dtype=np.float64)


@dataclass(frozen=True)
class AdditiveResponse:
    """Monotone random steps per condition, one interaction, and a product-of-bumps QY.

    PL = ``pl0 + Σ trend_i·step_i(u_i) + inter·(u_Tcore - ½)(u_Cl:I - ½)``; FWHM =
    ``fwhm0 + Σ fw_i·(u_i - ½)²``; QY = ``qy_max · Π_i bump_i(u_i) · exp(-((PL - pl_sweet)/
    pl_scale)²)``: small (blue) and large (red) dots are dimmer, as real InP cores are.
    """

    pl0_nm: float
    trend_nm: tuple[float, ...]
    steps: tuple[Steps, ...]
    interaction_nm: float
    fwhm0_nm: float
    fwhm_curv_nm: tuple[float, ...]
    qy_max: float
    bump_centre: tuple[float, ...]
    bump_width: tuple[float, ...]
    pl_sweet_nm: float
    pl_scale_nm: float
    corners: Corners

    @classmethod
    def draw(cls, rng: np.random.Generator) -> AdditiveResponse:
        """One member's response (see :data:`FAMILY_PRIOR_TEXT` for the prior)."""
        dim = len(CONDITION_ORDER)
        # the shell and S:Zn bumps are narrow (they set the QY), the core ones wide
        narrow = np.array([0, 0, 1, 1, 0, 1, 0], dtype=bool)
        width = np.where(narrow, rng.uniform(0.35, 0.8, dim), rng.uniform(0.8, 2.0, dim))
        return cls(
            pl0_nm=float(rng.uniform(455.0, 480.0)), trend_nm=tuple(_draw_trend(rng).tolist()),
            steps=tuple(Steps.draw(rng) for _ in range(dim)),
            interaction_nm=float(rng.uniform(-25.0, 25.0)),
            fwhm0_nm=float(rng.uniform(44.0, 56.0)),
            fwhm_curv_nm=tuple(rng.uniform(0.0, 14.0, dim).tolist()),
            qy_max=float(rng.uniform(0.35, 0.75)),
            bump_centre=tuple(rng.uniform(0.1, 0.9, dim).tolist()),
            bump_width=tuple(width.tolist()), pl_sweet_nm=float(rng.uniform(540.0, 585.0)),
            pl_scale_nm=float(rng.uniform(70.0, 140.0)), corners=_draw_corners(rng))

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(pl_peak_nm, fwhm_nm, qy)`` per condition set."""
        u = unit_coordinates(c)
        shaped = np.column_stack([s(u[:, j]) for j, s in enumerate(self.steps)])
        i_t, i_cl = CONDITION_ORDER.index("t_core_c"), CONDITION_ORDER.index("cl_to_i")
        pl = (self.pl0_nm + shaped @ np.asarray(self.trend_nm)
              + self.interaction_nm * (u[:, i_t] - 0.5) * (u[:, i_cl] - 0.5))
        fwhm = self.fwhm0_nm + ((u - 0.5) ** 2) @ np.asarray(self.fwhm_curv_nm)
        log_bumps = -(((u - np.asarray(self.bump_centre)) / np.asarray(self.bump_width)) ** 2)
        qy = self.qy_max * np.exp(log_bumps.sum(axis=1)
                                  - ((pl - self.pl_sweet_nm) / self.pl_scale_nm) ** 2)
        return pl, fwhm, np.asarray(qy, dtype=np.float64)


def response_truth(response: Response, c: ConditionArrays) -> TruthArrays:
    """:class:`TruthArrays` of a non-twin response (failure: clogging or no emission)."""
    pl, fwhm, qy = response.product(c)
    none = (qy < response.corners.min_qy).astype(np.float64)
    p_fail = 1.0 - (1.0 - response.corners.clog(c)) * (1.0 - none)
    return TruthArrays(pl_peak_nm=pl, fwhm_nm=fwhm, qy=qy, p_fail=p_fail)


# --------------------------------------------------------------------------------- twin prior
@dataclass(frozen=True)
class PriorTerm:
    """How one twin constant is drawn.

    Attributes:
        section: ``chemistry``, ``optics`` or ``failures`` (the :class:`TwinConfig` field).
        name: The constant.
        law: ``lognormal`` (value × exp(N(0, spread))) or ``normal`` (value + N(0, spread)).
        spread: σ of the log (lognormal) or of the value in its unit (normal).
    """

    section: Literal["chemistry", "optics", "failures"]
    name: str
    law: Literal["lognormal", "normal"]
    spread: float


#: The prior of twin members around the calibrated twin (documented in docs/benchmarks.md).
TWIN_PRIOR: tuple[PriorTerm, ...] = (
    # activation energies
    PriorTerm("chemistry", "ea_conv_kj_mol", "lognormal", 0.15),
    PriorTerm("chemistry", "ea_nuclei_kj_mol", "normal", 8.0),
    PriorTerm("chemistry", "ea_ripening_kj_mol", "lognormal", 0.1),
    PriorTerm("chemistry", "ea_shell_kj_mol", "lognormal", 0.06),
    PriorTerm("chemistry", "ea_alloy_kj_mol", "lognormal", 0.2),
    PriorTerm("chemistry", "ea_hot_kj_mol", "lognormal", 0.06),
    # sizing curve and growth
    PriorTerm("optics", "e_bulk_ev", "normal", 0.035),
    PriorTerm("optics", "sizing_coef_ev", "lognormal", 0.04),
    PriorTerm("chemistry", "growth_edge_a", "lognormal", 0.05),
    PriorTerm("chemistry", "stokes_ev", "lognormal", 0.12),
    # halide effect
    PriorTerm("chemistry", "iodide_nuclei_gain", "lognormal", 0.3),
    PriorTerm("chemistry", "iodide_nuclei_exponent", "lognormal", 0.12),
    # shell kinetics
    PriorTerm("chemistry", "k_shell_ref_per_min", "lognormal", 0.35),
    PriorTerm("chemistry", "shell_dose_ml", "lognormal", 0.15),
    PriorTerm("chemistry", "alloy_depth_ref_a", "lognormal", 0.25),
    # strain and trap terms
    PriorTerm("chemistry", "k_strain_rel", "lognormal", 0.35),
    PriorTerm("chemistry", "critical_ml", "lognormal", 0.15),
    PriorTerm("chemistry", "k_surf_rel", "lognormal", 0.3),
    PriorTerm("chemistry", "passivation_ml", "lognormal", 0.15),
    PriorTerm("chemistry", "trap_qy_max", "lognormal", 0.3),
    PriorTerm("chemistry", "k_hot_rel", "lognormal", 0.35),
    PriorTerm("chemistry", "k_base_rel", "lognormal", 0.25),
    # where it clogs
    PriorTerm("failures", "clog_t_core_c", "normal", 3.0),
    PriorTerm("failures", "clog_tau_core_min", "lognormal", 0.08),
    PriorTerm("failures", "clog_s_to_zn", "lognormal", 0.04),
    PriorTerm("failures", "clog_t_shell_c", "normal", 4.0),
)


def _drawn(base: Any, terms: Sequence[PriorTerm], rng: np.random.Generator) -> dict[str, float]:
    out = {}
    for t in terms:
        v = float(getattr(base, t.name))
        z = float(rng.standard_normal())
        out[t.name] = v * math.exp(t.spread * z) if t.law == "lognormal" else v + t.spread * z
    return out


def draw_noise(rng: np.random.Generator, base: TwinConfig) -> dict[str, float]:
    """Noise levels of a member: temperature, flow and ratio jitter, QY read-out error."""
    return {"temperature_jitter_c": float(rng.uniform(0.3, 1.5)),
            "flow_jitter_rel": float(rng.uniform(0.005, 0.03)),
            "ratio_jitter_rel": float(rng.uniform(0.003, 0.02)),
            "qy_readout_rel": float(rng.uniform(0.02, 0.08)),
            "shot_noise": base.noise.shot_noise}


def draw_twin_config(rng: np.random.Generator, base: TwinConfig | None = None) -> TwinConfig:
    """A twin with constants drawn from :data:`TWIN_PRIOR`, noise from :func:`draw_noise`."""
    base = base or TwinConfig()
    update: dict[str, Any] = {}
    for section in ("chemistry", "optics", "failures"):
        terms = [t for t in TWIN_PRIOR if t.section == section]
        part = getattr(base, section)
        update[section] = part.model_copy(update=_drawn(part, terms, rng))
    update["noise"] = base.noise.model_copy(update=draw_noise(rng, base))
    return base.model_copy(update=update)


def twin_truth(config: TwinConfig, c: ConditionArrays, chunk: int = 2048) -> TruthArrays:
    """:class:`TruthArrays` of a twin (the fast path, with its failure probabilities)."""
    parts = []
    for s in range(0, len(c), chunk):
        sub = ConditionArrays(*(getattr(c, f)[s:s + chunk] for f in CONDITION_ORDER))
        core, shell = states(sub, config)
        f = features_from_states(core, shell, config, with_abs=False)
        fail = failure_probabilities(sub, core, shell, config.failures)
        p_fail = 1.0 - (1.0 - fail["clogging"]) * (1.0 - fail["no_emission"])
        parts.append((f.pl_peak_nm, f.fwhm_nm, f.qy, p_fail))
    if not parts:
        empty = np.zeros(0)
        return TruthArrays(empty, empty, empty, empty)
    return TruthArrays(*(np.concatenate([p[i] for p in parts]) for i in range(4)))


# --------------------------------------------------------------------------------- rendering
def _gauss(x: FloatArray, mu: FloatArray | float, sigma: FloatArray | float) -> FloatArray:
    return np.asarray(np.exp(-0.5 * ((x - mu) / sigma) ** 2), dtype=np.float64)


def render_product(wl_nm: FloatArray, pl_nm: float, fwhm_nm: float, qy: float, *,
                   stokes_ev: float, absorbance_1s: float) -> tuple[FloatArray, FloatArray]:
    """Absorbance and emission (per absorbed photon per nm, ∫ = QY) on a detector grid.

    Emission: a Gaussian in wavelength at ``pl_nm`` with ``fwhm_nm``. Absorbance: a first-exciton
    band ``stokes_ev`` above the emission, as wide (in energy) as the emission, a weaker second
    transition, and a rising continuum towards the UV (so the 405-nm excitation is absorbed).
    """
    wl = np.asarray(wl_nm, dtype=np.float64)
    pl = float(np.clip(pl_nm, *PL_LIMITS_NM))
    sigma_nm = fwhm_nm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    em = qy * _gauss(wl, pl, sigma_nm) / (sigma_nm * math.sqrt(2.0 * math.pi))
    e = HC_EV_NM / wl
    e_pl = HC_EV_NM / pl
    e1 = e_pl + stokes_ev
    sigma_ev = max(e_pl - HC_EV_NM / (pl + fwhm_nm / 2.0), 0.02) / math.sqrt(2.0 * math.log(2.0))
    shape = (_gauss(e, e1, sigma_ev) + 0.25 * _gauss(e, e1 + 0.22, 1.3 * sigma_ev)
             + 1.6 / (1.0 + np.exp(-(e - e1 - 0.5) / 0.25)) + 0.01 * (400.0 / wl) ** 4)
    return absorbance_1s * shape, np.asarray(em, dtype=np.float64)


class ResponseTwin(DigitalTwin):
    """The twin's virtual cascade with the chemistry replaced by a non-twin response.

    Everything a reactor does around the chemistry is the twin's (clock, flush of the previous
    product, heater ramps, settling trace, condition jitter, detector noise, failure draws,
    reagents), so the analyzer sees spectra of the same kind; only what comes out of the tanks
    is the response's.
    """

    #: The response has no kinetics: its steady products are carried through the washout.
    resolves_transients = False

    def __init__(self, response: Response, config: TwinConfig, stokes_ev: float = 0.12,
                 qy_reference: QYReference | None = None) -> None:
        super().__init__(config, qy_reference=qy_reference)
        self.response = response
        self.stokes_ev = stokes_ev

    def _product(self, conditions: Conditions) -> tuple[FloatArray, FloatArray, float, float]:
        c = ConditionArrays.from_conditions([conditions])
        pl, fwhm, qy = (float(v[0]) for v in self.response.product(c))
        # conversion rises with core temperature and residence (sets the absorbance)
        k = 0.08 * math.exp(0.03 * (conditions.t_core_c - 180.0))
        conversion = 1.0 - math.exp(-k * conditions.tau_core_min)
        a, em = render_product(self.wavelengths_nm, pl, fwhm, qy, stokes_ev=self.stokes_ev,
                               absorbance_1s=self.config.optics.absorbance_1s_full * conversion)
        return a, em, qy, conversion

    def _spectra(self, conditions: Conditions) -> tuple[FloatArray, FloatArray, float, float]:
        return self._product(conditions)

    def _truth(self, conditions: Conditions, core_only: bool) -> GroundTruth:
        c = ConditionArrays.from_conditions([conditions])
        t = response_truth(self.response, c)
        a, em, qy, conversion = self._product(conditions)
        wl = self.wavelengths_nm
        e1 = HC_EV_NM / float(t.pl_peak_nm[0]) + self.stokes_ev
        clog = float(self.response.corners.clog(c)[0])
        return GroundTruth(
            pl_peak_nm=float(t.pl_peak_nm[0]), fwhm_nm=float(t.fwhm_nm[0]), qy=qy, qy_trap=0.0,
            abs_peak_nm=HC_EV_NM / e1, mean_edge_nm=math.nan, size_cv=math.nan,
            shell_ml=math.nan, conversion=conversion,
            absorbance_at_excitation=float(np.interp(self.config.detector.excitation_nm, wl, a)),
            throughput_g_h=throughput_g_h(conditions, self.config, conversion),
            failure_probability={"clogging": clog,
                                 "no_emission": float(qy < self.response.corners.min_qy)},
            wavelengths_nm=wl, absorbance=a, emission_per_nm=em)


class MemberExecutor(SimulatedExecutor):
    """A family member behind the Executor protocol: the one procedure on the simulated rig.

    The rig's outlet carries the member's response instead of the twin's chemistry.

    Keeps the noise-free truth of every run in :attr:`truths`, like :class:`SimulatedExecutor`;
    ``procedure`` takes the executor's ``settling`` and ``flush``.
    """

    def __init__(self, response: Response, config: TwinConfig, seed: int = 0,
                 stokes_ev: float = 0.12, **procedure: Any) -> None:
        super().__init__(config, seed=seed,
                         physics=ResponseTwin(response, config, stokes_ev=stokes_ev), **procedure)


# --------------------------------------------------------------------------------- members
@dataclass(frozen=True)
class Member:
    """One reactor of the family (picklable: it travels to pool and Ray workers).

    Attributes:
        kind: ``twin``, ``rff``, ``additive`` or ``custom``.
        seed: The member's seed (its constants are a pure function of kind and seed).
        twin: Reactor, detector, noise and failures (and, for twin members, the chemistry).
        response: The non-twin chemistry (None for twin members).
        stokes_ev: Emission-to-first-exciton gap of rendered spectra (non-twin members).
        label: The name's prefix instead of the kind (a custom reactor's label).
    """

    kind: MemberKind
    seed: int
    twin: TwinConfig = field(default_factory=TwinConfig)
    response: Response | None = None
    stokes_ev: float = 0.12
    label: str = ""

    @property
    def name(self) -> str:
        """``kind-seed``, e.g. ``twin-3`` (``twin-nominal`` for the calibrated twin)."""
        return f"{self.label or self.kind}-{'nominal' if self.seed < 0 else self.seed}"

    def identity(self) -> dict[str, Any]:
        """What determines this reactor, for fingerprints of cells and yardsticks.

        Drawn members are a pure function of kind, seed and base settings; a custom one adds its
        model's import path and source hash (so a changed model is never taken from a cache).
        """
        doc: dict[str, Any] = {"kind": self.kind, "seed": self.seed,
                               "twin": self.twin.model_dump(mode="json")}
        identity = getattr(self.response, "identity", None)
        if callable(identity):
            doc.update(identity(), label=self.label)
        return doc

    @property
    def split(self) -> Split:
        """``heldout`` for seeds from :data:`HELDOUT_SEED_BASE` on, else ``design``."""
        return "heldout" if self.seed >= HELDOUT_SEED_BASE else "design"

    def truth(self, c: ConditionArrays) -> TruthArrays:
        """Noise-free product of many condition sets (vectorized, cheap)."""
        if self.response is None:
            return twin_truth(self.twin, c)
        return response_truth(self.response, c)

    def truth_points(self, x: FloatArray, names: Sequence[str],
                     fixed: Mapping[str, float]) -> TruthArrays:
        """Noise-free product of searched points ``(n, len(names))`` plus fixed conditions."""
        return self.truth(condition_matrix(x, names, fixed))

    def executor(self, seed: int = 0, **procedure: Any) -> SimulatedExecutor:
        """A fresh executor for one campaign; ``seed`` seeds its noise and failure draws.

        ``procedure`` takes the executor's ``settling`` and ``flush``.
        """
        if self.response is None:
            return SimulatedExecutor(self.twin, seed=seed, **procedure)
        return MemberExecutor(self.response, self.twin, seed=seed, stokes_ev=self.stokes_ev,
                              **procedure)


def nominal_member(twin: TwinConfig | None = None) -> Member:
    """The calibrated twin itself, as a member (seed -1, design set)."""
    return Member(kind="twin", seed=-1, twin=twin or TwinConfig())


def draw_member(kind: DrawnKind, seed: int, base: TwinConfig | None = None) -> Member:
    """Member ``seed`` of a kind: a pure function of (kind, seed).

    Raises:
        ValueError: Unknown kind or a negative seed.
    """
    if kind not in _KIND_CODE:
        raise ValueError(f"unknown member kind {kind!r}; known: {list(MEMBER_KINDS)}")
    if seed < 0:
        raise ValueError(f"member seeds are non-negative, got {seed}")
    base = base or TwinConfig()
    rng = np.random.default_rng([_KIND_CODE[kind], seed])
    if kind == "twin":
        return Member(kind=kind, seed=seed, twin=draw_twin_config(rng, base))
    noisy = base.model_copy(update={"noise": base.noise.model_copy(update=draw_noise(rng, base))})
    response: RFFResponse | AdditiveResponse = (RFFResponse.draw(rng) if kind == "rff"
                                                else AdditiveResponse.draw(rng))
    return Member(kind=kind, seed=seed, twin=noisy, response=response,
                  stokes_ev=float(rng.uniform(0.08, 0.16)))


def family(kinds: Sequence[DrawnKind] = MEMBER_KINDS, per_kind: int = 4,
           split: Split = "design", base: TwinConfig | None = None) -> list[Member]:
    """``per_kind`` members of each kind from one set.

    The design set uses seeds ``0..per_kind-1``; the held-out set seeds
    ``HELDOUT_SEED_BASE + 0..per_kind-1``, so no held-out reactor is ever tuned on.
    """
    first = 0 if split == "design" else HELDOUT_SEED_BASE
    return [draw_member(k, first + i, base) for k in kinds for i in range(per_kind)]


# --------------------------------------------------------------------------------- spread
#: The calibrated twin's 550-nm neighbourhood (seed-paper conditions with Cl:I 4.9): the PL of
#: every member here shows how far the family moves the emission.
NOMINAL_550: dict[str, float] = {"t_core_c": 180.0, "tau_core_min": 13.0, "t_shell_c": 290.0,
                                 "tau_shell_min": 15.0, "cl_to_i": 4.9, "s_to_zn": 2.0,
                                 "p_to_in": 3.6}


@dataclass(frozen=True)
class MemberSpread:
    """How one member differs from the calibrated twin.

    Attributes:
        name: Member name.
        pl_at_nominal_550_nm: Noise-free PL at :data:`NOMINAL_550`.
        qy_at_nominal_550: Noise-free QY there.
        pl_range_nm: 1st and 99th percentile of the PL over the box (points that do not fail).
        best_qy: Best noise-free QY over the box.
        best_qy_unit: Where it lies, unit-cube coordinates of the searched conditions.
        fail_share: Share of the box where an experiment fails at least half the time.
    """

    name: str
    pl_at_nominal_550_nm: float
    qy_at_nominal_550: float
    pl_range_nm: tuple[float, float]
    best_qy: float
    best_qy_unit: tuple[float, ...]
    fail_share: float


def member_spread(member: Member, unit: FloatArray, x: FloatArray, names: Sequence[str],
                  fixed: Mapping[str, float]) -> MemberSpread:
    """One member's :class:`MemberSpread` on a shared sample of the box.

    Args:
        member: The member.
        unit: Unit-cube sample ``(n, len(names))``.
        x: The same points in physical units.
        names: Searched conditions.
        fixed: Fixed conditions.
    """
    nominal = np.array([[NOMINAL_550[n] for n in names]])
    at = member.truth_points(nominal, names, {**fixed, "p_to_in": NOMINAL_550["p_to_in"]})
    t = member.truth_points(x, names, fixed)
    ok = t.p_fail < 0.5
    best = int(np.argmax(np.where(ok, t.qy, -1.0)))
    lo, hi = np.percentile(t.pl_peak_nm[ok], [1, 99])
    return MemberSpread(name=member.name, pl_at_nominal_550_nm=float(at.pl_peak_nm[0]),
                        qy_at_nominal_550=float(at.qy[0]), pl_range_nm=(float(lo), float(hi)),
                        best_qy=float(t.qy[best]),
                        best_qy_unit=tuple(float(v) for v in unit[best]),
                        fail_share=float(1.0 - ok.mean()))
