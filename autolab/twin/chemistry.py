"""Pure, vectorized chemistry of the twin: InP core nucleation/growth and ZnS shelling.

The model is a segregated-flow (fluid-element) picture of the CSTR cascade:

* **Core stage.** Nuclei form in a burst in the first tank; their number (relative to a
  chloride-only feed at ``t_ref_core_c`` and ``p_opt``) grows with the iodide fraction I/(Cl+I)
  (iodide speeds nucleation and caps growth, so more iodide gives smaller, bluer dots), changes with
  temperature and rises with P:In (more reactive aminophosphine). The In precursor converts
  first-order with an Arrhenius rate (a few tenths per minute at 180 °C, so conversion takes minutes
  and the residence time matters) that also scales with the particle surface available
  (``nuclei**surface_rate_exponent``); at P:In below ``p_stoich`` = 4 only P:In/4 of the In can
  convert (P-limited; Tessier et al., JACS 2016). A fluid element of age *t* holds particles of edge
  ``L(t) = (L_seed³ + L_g³·X(t)/nuclei)^(1/3)``. The size distribution is the distribution of
  ``L(t)`` over the tanks-in-series (Erlang) age distribution, evaluated by Gauss–Laguerre
  quadrature: the RTD broadens sizes strongly while growth is still linear in time (short, cold core
  stages) and hardly at all once the precursor is used up (tanks-in-series RTD as in Levenspiel
  1999, coupled with the growth kinetics). The nucleation burst adds a spread that narrows with T
  and with iodide but never below ``cv_nucleation_floor`` (spread of nucleation times within a
  burst); Ostwald ripening (grows with T and time) and P:In mismatch add spread in quadrature; their
  balance puts the narrowest cores at 180 °C and P:In 3.6 (seed paper).
* **Precursor left at the core outlet** reaches the hot shell stage. There it converts at
  ``t_shell_c``; a share ``shell_growth_fraction`` deposits on the cores (the stirred tanks share
  that monomer among all dots: equal volume per dot, which narrows the relative size spread and
  red-shifts), the rest builds an In-rich interface that quenches emission (``k_residual_rel``).
* **Shell stage.** ZnS thickness ``h = h_max·E[1 - exp(-k_s·t)]`` over the shell-stage Erlang ages
  (closed form ``1 - (1 + k_s·τ/N)^-N``) with an Arrhenius ``k_s`` (low Zn reactivity, high
  activation energy) and ``h_max`` limited by sulfur below S:Zn = 2. Interface alloying/etching,
  a diffusion length ``∝ sqrt(D(T)·τ)``, shrinks the effective core and gives the blue shift with
  shell temperature (563 → 558 nm from 270 → 310 °C).
* **Quantum yield** (competing rates): ``QY = k_r / (k_r + k_surf·exp(-h/h0) +
  k_strain·max(0, h - h_c)² + k_base + k_S+·max(0, S:Zn - 2) + k_S-·max(0, 2 - S:Zn) +
  k_P·ln(P:In/p_opt)² + k_hot(T_shell)·sqrt(τ_shell/15) + k_res·residual)``: thin shells leave
  surface traps, thick ones misfit defects, S-rich and Zn-rich (S-poor) surfaces trap carriers,
  off-stoichiometric cores carry defects, hot shells damage the interface (high activation
  energy), and unreacted core precursor makes an In-rich interface. Only the paper's region
  (T_core ~180 °C with enough time, T_shell ~290 °C, S:Zn ~2, P:In ~3.6) gets all of them small.
  A deep-trap emission yield fades within about a monolayer of shell (the red tail of thin
  shells).

Everything here is a pure function of arrays of shape ``(n,)`` (one entry per condition set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln, roots_genlaguerre

from autolab.records import Conditions
from autolab.twin.config import ChemistryParams, FailureParams

FloatArray = NDArray[np.float64]

R_KJ_MOL_K = 8.314462618e-3
ZERO_C_K = 273.15
#: ZnS monolayer thickness along {111}, Å (a/√3 with a = 5.409 Å).
ZNS_MONOLAYER_A = 3.12
#: Number of Gauss–Laguerre nodes used for RTD averages.
N_AGE_NODES = 24


@dataclass(frozen=True, eq=False)
class ConditionArrays:
    """Conditions as parallel arrays, shape ``(n,)`` each (names as in :class:`Conditions`)."""

    t_core_c: FloatArray
    tau_core_min: FloatArray
    t_shell_c: FloatArray
    tau_shell_min: FloatArray
    cl_to_i: FloatArray
    s_to_zn: FloatArray
    p_to_in: FloatArray

    @classmethod
    def from_conditions(cls, conditions: Sequence[Conditions]) -> ConditionArrays:
        """Stack a sequence of :class:`Conditions` into arrays."""
        names = ("t_core_c", "tau_core_min", "t_shell_c", "tau_shell_min", "cl_to_i",
                 "s_to_zn", "p_to_in")
        cols = {n: np.array([getattr(c, n) for c in conditions], dtype=np.float64) for n in names}
        return cls(**cols)

    @classmethod
    def from_matrix(cls, x: FloatArray) -> ConditionArrays:
        """From an array of shape ``(n, 7)`` in :class:`Conditions` field order."""
        arr = np.asarray(x, dtype=np.float64).reshape(-1, 7)
        return cls(*(arr[:, j].copy() for j in range(7)))

    def __len__(self) -> int:
        return int(self.t_core_c.shape[0])

    def take(self, index: int) -> Conditions:
        """Row ``index`` as :class:`Conditions`."""
        i = index
        return Conditions(float(self.t_core_c[i]), float(self.tau_core_min[i]),
                          float(self.t_shell_c[i]), float(self.tau_shell_min[i]),
                          float(self.cl_to_i[i]), float(self.s_to_zn[i]), float(self.p_to_in[i]))


@dataclass(frozen=True, eq=False)
class CoreState:
    """Outlet of the core stage, arrays of shape ``(n,)``.

    Attributes:
        mean_edge_a: Mean tetrahedron edge length of the InP cores, Å.
        size_cv: Relative standard deviation of the edge length.
        conversion: Mean fraction of the fed In converted to InP.
        nuclei_rel: Nuclei count relative to a chloride-only feed at the reference T and P:In.
        residual_precursor: Fraction of the convertible In precursor still unreacted at the
            core outlet (0 = fully converted); it reaches the hot shell stage.
    """

    mean_edge_a: FloatArray
    size_cv: FloatArray
    conversion: FloatArray
    nuclei_rel: FloatArray
    residual_precursor: FloatArray


@dataclass(frozen=True, eq=False)
class ShellState:
    """Outlet of the shell stage, arrays of shape ``(n,)``.

    Attributes:
        shell_ml: Mean ZnS shell thickness, monolayers.
        alloy_a: Interface alloying/etching depth that shrinks the effective core, Å.
        qy_band: Band-edge quantum yield (fraction).
        qy_trap: Deep-trap emission yield (fraction).
        sigma_extra_ev: Extra inhomogeneous broadening (strain, S-rich surface), Gaussian sigma, eV.
    """

    shell_ml: FloatArray
    alloy_a: FloatArray
    qy_band: FloatArray
    qy_trap: FloatArray
    sigma_extra_ev: FloatArray


def arrhenius(k_ref: float, ea_kj_mol: float, t_c: FloatArray, t_ref_c: float) -> FloatArray:
    """Arrhenius rate with a reference temperature: ``k_ref·exp(-Ea/R·(1/T - 1/T_ref))``."""
    inv = 1.0 / (np.asarray(t_c) + ZERO_C_K) - 1.0 / (t_ref_c + ZERO_C_K)
    return np.asarray(k_ref * np.exp(-ea_kj_mol / R_KJ_MOL_K * inv), dtype=np.float64)


def iodide_fraction(cl_to_i: FloatArray) -> FloatArray:
    """Iodide fraction I/(Cl+I) from the Cl:I molar ratio (``inf`` -> 0, no iodide)."""
    r = np.asarray(cl_to_i, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(np.isinf(r), 0.0, 1.0 / (1.0 + r))


@lru_cache(maxsize=16)
def erlang_nodes(n_tanks: int, n_nodes: int = N_AGE_NODES) -> tuple[FloatArray, FloatArray]:
    """Quadrature nodes/weights for averages over the Erlang(N) age distribution.

    Returns:
        ``(x, w)``, each of shape ``(n_nodes,)``: ages in units of the *mean* residence time and
        weights summing to 1, so ``E[g(age)] ≈ sum(w * g(x * tau))``.
    """
    x, w = roots_genlaguerre(n_nodes, n_tanks - 1)
    w = np.exp(np.log(w) - gammaln(n_tanks))
    return np.asarray(x / n_tanks, dtype=np.float64), np.asarray(w / w.sum(), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class TankProfile:
    """Per-tank picture of ``n`` condition sets: what each tank of each stage does.

    The plain two-stage reactor is :meth:`uniform`; the optional per-tank conditions
    (temperature profile, stirring, sulfur injection position and split) give other profiles
    (:func:`autolab.twin.cascade.tank_profile`).

    Attributes:
        core_t_c: Temperatures of the core tanks, ``(n, n_core)`` °C (tank 1 nucleates).
        shell_t_c: Temperatures of the shell tanks, ``(n, n_shell)`` °C.
        shell_tank_min: Mean residence time of each shell tank, ``(n, n_shell)`` min.
        sulfur: Share of the shell feed entered by each shell tank, ``(n, n_shell)``.
        stir_rpm: Stirring rate, ``(n,)`` rpm.
    """

    core_t_c: FloatArray
    shell_t_c: FloatArray
    shell_tank_min: FloatArray
    sulfur: FloatArray
    stir_rpm: FloatArray

    @classmethod
    def uniform(cls, c: ConditionArrays, n_core: int, n_shell: int,
                stir_rpm: float = 600.0) -> TankProfile:
        """Every core tank at ``t_core_c``, every shell tank at ``t_shell_c``, one injection."""
        n = len(c)
        return cls(core_t_c=np.repeat(c.t_core_c[:, None], n_core, axis=1),
                   shell_t_c=np.repeat(c.t_shell_c[:, None], n_shell, axis=1),
                   shell_tank_min=np.repeat((c.tau_shell_min / n_shell)[:, None], n_shell,
                                            axis=1),
                   sulfur=np.ones((n, n_shell)), stir_rpm=np.full(n, stir_rpm))

    @property
    def n_core(self) -> int:
        """Tanks of the core stage."""
        return int(self.core_t_c.shape[1])

    @property
    def n_shell(self) -> int:
        """Tanks of the shell stage."""
        return int(self.shell_t_c.shape[1])


def nuclei_rel(c: ConditionArrays, chem: ChemistryParams,
               t_nucleation_c: FloatArray | None = None) -> FloatArray:
    """Relative nuclei count (1 = chloride only, ``t_ref_core_c``, ``p_opt``), shape ``(n,)``.

    ``t_nucleation_c``: temperature of the tank where the burst happens (tank 1; default
    ``t_core_c``).
    """
    t = c.t_core_c if t_nucleation_c is None else t_nucleation_c
    f = iodide_fraction(c.cl_to_i)
    return ((1.0 + chem.iodide_nuclei_gain * f ** chem.iodide_nuclei_exponent)
            * arrhenius(1.0, chem.ea_nuclei_kj_mol, t, chem.t_ref_core_c)
            * (c.p_to_in / chem.p_opt) ** chem.p_nuclei_exponent)


def birth_spread_sq(c: ConditionArrays, chem: ChemistryParams, t_nucleation_c: FloatArray,
                    stir_rpm: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Squared size spreads a fluid element is born with: ``(burst², P:In mismatch²)``, ``(n,)``.

    The burst narrows as nucleation speeds up (hotter, more iodide) but never below the floor
    set by the spread of nucleation times within one burst (InP/ZnS ensembles have size
    dispersions δ ≈ 11–17 %, Savchenko & Weinstein, arXiv:1906.06539; the best flow cores ~8 %,
    Wang & Segets, React. Chem. Eng. 2023); the floor is added by
    :func:`core_ensemble`. Below ``stir_ref_rpm`` the micromixing time (∝ rpm^-1.5) is no longer
    short against the burst, and the nucleation tank's concentration field adds spread. Off the
    optimum P:In the nucleation chemistry changes regime (P-limited below, P-excess above): an
    extra spread that rises steeply near p_opt and saturates far from it.
    """
    f = iodide_fraction(c.cl_to_i)
    cv_burst = (chem.cv_nucleation_ref
                / arrhenius(1.0, chem.ea_nucleation_cv_kj_mol, t_nucleation_c, chem.t_ref_core_c)
                / (1.0 + chem.iodide_cv_gain * f ** chem.iodide_cv_exponent))
    slow = np.maximum(0.0, (chem.stir_ref_rpm / np.asarray(stir_rpm)) ** 1.5 - 1.0)
    cv_mix = chem.cv_mixing_ref * slow
    cv_p = chem.cv_p_mismatch * np.tanh(np.abs(np.log(c.p_to_in / chem.p_opt))
                                        / chem.p_mismatch_scale)
    return cv_burst ** 2 + cv_mix ** 2, cv_p ** 2


def core_ensemble(conv: FloatArray, rip_exposure: FloatArray, weights: FloatArray, *,
                  nuc: FloatArray, birth_sq: FloatArray, p_sq: FloatArray, cv_gas: float,
                  residual: FloatArray, chem: ChemistryParams) -> CoreState:
    """Core state of an ensemble of fluid elements (the one formula of sizes and spreads).

    The steady state passes Erlang quadrature nodes; the transient cascade passes its age
    classes. Arrays of shape ``(n, m)`` hold one entry per element class.

    Args:
        conv: In converted per element class, fraction of the fed In (deposit included).
        rip_exposure: Ripening exposure ``∫k_rip dt`` per class (dot count falls as
            ``1/(1 + exposure)``, LSW).
        weights: Class weights, ``(n, m)`` or ``(m,)``, rows summing to 1.
        nuc: Relative nuclei count per class, ``(n, m)`` or ``(n,)``.
        birth_sq: Mean burst² + mixing² spread of the elements, ``(n,)``.
        p_sq: Mean P:In mismatch² spread, ``(n,)``.
        cv_gas: Spread from gas slugs (horizontal cascade).
        residual: Fraction of the convertible precursor left at the core outlet, ``(n,)``.
        chem: Chemistry constants.
    """
    w = np.broadcast_to(weights, conv.shape)
    nuc2 = nuc if nuc.ndim == 2 else nuc[:, None]
    coarsen = 1.0 + rip_exposure
    edge = np.cbrt((chem.seed_edge_a ** 3 + chem.growth_edge_a ** 3 * conv / nuc2) * coarsen)
    m1 = (edge * w).sum(axis=1)
    m2 = (edge * edge * w).sum(axis=1)
    cv_rtd = np.sqrt(np.maximum(m2 / (m1 * m1) - 1.0, 0.0))
    cv_nuc_sq = chem.cv_nucleation_floor ** 2 + birth_sq
    # Ripening drives the distribution towards the (broad, bounded) LSW stationary shape.
    rip_progress = (rip_exposure / coarsen * w).sum(axis=1)
    cv_rip = chem.cv_ripening_max * rip_progress
    cv = np.sqrt(cv_rtd ** 2 + cv_nuc_sq + cv_rip ** 2 + p_sq + cv_gas ** 2)
    return CoreState(mean_edge_a=m1, size_cv=cv, conversion=(conv * w).sum(axis=1),
                     nuclei_rel=(nuc2 * w).sum(axis=1), residual_precursor=residual)


def core_stage(c: ConditionArrays, chem: ChemistryParams, n_core_tanks: int,
               horizontal: bool = False, n_shell_tanks: int = 0, *,
               profile: TankProfile | None = None) -> CoreState:
    """Steady-state size distribution of the InP cores (over the core-stage RTD).

    Args:
        c: Conditions, arrays of shape ``(n,)``.
        chem: Chemistry constants.
        n_core_tanks: Tanks in the core stage (sets the Erlang order of the age distribution).
        horizontal: Cascade lies flat: trapped gas shortens the residence and adds spread.
        n_shell_tanks: 0 for the core-stage outlet (bare cores). Otherwise the cores as they
            leave the shell stage of that many tanks: the precursor still unreacted at the core
            outlet converts there at the shell tanks' temperatures, and
            ``shell_growth_fraction`` of it deposits on the existing cores. The stirred shell
            tanks share that monomer among all dots, so every dot gains the same volume, which
            narrows the relative size spread (small dots gain more edge length) and red-shifts.
        profile: Per-tank temperatures, stirring and shell layout (default: uniform stages).
            Tank 1 nucleates (its temperature sets the nuclei count and burst width); growth
            and ripening run at the mean Arrhenius factor of the core tanks, exact for the mean
            exposure of an element of a given age because the core tanks share its time equally.

    Returns:
        The core state, arrays of shape ``(n,)``.
    """
    prof = profile or TankProfile.uniform(c, n_core_tanks, max(n_shell_tanks, 1))
    t_nuc = prof.core_t_c[:, 0]
    nuc = nuclei_rel(c, chem, t_nuc)
    x_max = np.minimum(1.0, c.p_to_in / chem.p_stoich)
    k = (chem.k_conv_ref_per_min * nuc ** chem.surface_rate_exponent
         * arrhenius(1.0, chem.ea_conv_kj_mol, prof.core_t_c, chem.t_ref_core_c).mean(axis=1))
    k_rip = arrhenius(chem.k_ripening_ref_per_min, chem.ea_ripening_kj_mol, prof.core_t_c,
                      chem.t_ref_core_c).mean(axis=1)
    tau = c.tau_core_min * ((1.0 - chem.gas_volume_fraction) if horizontal else 1.0)
    x_nodes, w = erlang_nodes(n_core_tanks)
    ages = tau[:, None] * x_nodes[None, :]  # (n, m)
    conv = x_max[:, None] * -np.expm1(-k[:, None] * ages)
    residual = 1.0 - (conv @ w) / x_max
    if n_shell_tanks:
        k_hot = (chem.k_conv_ref_per_min * nuc[:, None] ** chem.surface_rate_exponent
                 * arrhenius(1.0, chem.ea_conv_kj_mol, prof.shell_t_c, chem.t_ref_core_c))
        done = 1.0 - np.prod(1.0 / (1.0 + k_hot * prof.shell_tank_min), axis=1)
        conv = conv + (chem.shell_growth_fraction * done * residual * x_max)[:, None]
    birth_sq, p_sq = birth_spread_sq(c, chem, t_nuc, prof.stir_rpm)
    return core_ensemble(conv, k_rip[:, None] * ages, w, nuc=nuc, birth_sq=birth_sq, p_sq=p_sq,
                         cv_gas=chem.gas_cv if horizontal else 0.0, residual=residual,
                         chem=chem)


def shell_stage(c: ConditionArrays, chem: ChemistryParams, n_shell_tanks: int,
                core: CoreState | None = None, profile: TankProfile | None = None) -> ShellState:
    """Steady-state outlet of the shell stage: thickness, alloying, QY and extra broadening.

    Each shell tank i (residence ``τ_i``, temperature ``T_i``, sulfur share ``φ_i``) is a CSTR
    balance, so the unreacted Zn/S fraction leaving the stage is ``Π 1/(1 + k_s(T_i)·φ_i·τ_i)``
    (``(1 + k_s·τ/N)^-N`` for a uniform stage) and the interface exposures are the sums
    ``Σ D(T_i)·τ_i``.

    Args:
        c: Conditions, arrays of shape ``(n,)``.
        chem: Chemistry constants.
        n_shell_tanks: Tanks in the shell stage.
        core: Core-stage outlet; its unreacted precursor degrades the interface (omit: none).
        profile: Per-tank temperatures, residence times and sulfur shares (default: uniform).

    Returns:
        The shell state, arrays of shape ``(n,)``.
    """
    prof = profile or TankProfile.uniform(c, 1, n_shell_tanks)
    k_s = arrhenius(chem.k_shell_ref_per_min, chem.ea_shell_kj_mol, prof.shell_t_c,
                    chem.t_ref_shell_c)
    left = np.prod(1.0 / (1.0 + k_s * prof.sulfur * prof.shell_tank_min), axis=1)
    alloy_exposure = (arrhenius(1.0, chem.ea_alloy_kj_mol, prof.shell_t_c, chem.t_ref_shell_c)
                      * prof.shell_tank_min).sum(axis=1)
    hot_exposure = (arrhenius(1.0, chem.ea_hot_kj_mol, prof.shell_t_c, chem.t_ref_shell_c) ** 2
                    * prof.shell_tank_min).sum(axis=1)
    residual = (np.zeros_like(left) if core is None
                else np.clip(core.residual_precursor, 0.0, 1.0))
    return shell_from_exposures(1.0 - left, alloy_exposure, hot_exposure, s_to_zn=c.s_to_zn,
                                ln_p_sq=np.log(c.p_to_in / chem.p_opt) ** 2, residual=residual,
                                chem=chem)


def shell_from_exposures(deposited: FloatArray, alloy_exposure: FloatArray,
                         hot_exposure: FloatArray, *, s_to_zn: FloatArray, ln_p_sq: FloatArray,
                         residual: FloatArray, chem: ChemistryParams) -> ShellState:
    """Shell state from what the elements went through (the one formula of thickness and QY).

    Args:
        deposited: Fraction of the shell dose deposited (``1 - E[exp(-∫k_s·φ dt)]``), ``(n,)``.
        alloy_exposure: ``E[∫ D(T)/D(T_ref) dt]`` in the shell stage, min: the interface
            alloying depth grows as its square root (diffusion length).
        hot_exposure: ``E[∫ (k_hot(T)/k_hot(T_ref))² dt]``, min: interfacial damage grows as the
            square root of time at a rate that rises steeply with temperature.
        s_to_zn: S:Zn of the shell feed, ``(n,)``.
        ln_p_sq: ``ln(P:In/p_opt)²`` of the core feed, ``(n,)``.
        residual: Unreacted core precursor carried into the shell stage, ``(n,)``.
        chem: Chemistry constants.
    """
    h_max = chem.shell_dose_ml * np.minimum(1.0, s_to_zn / chem.s_opt)
    h = h_max * deposited
    alloy = chem.alloy_depth_ref_a * np.sqrt(alloy_exposure / 15.0)
    excess_s = np.maximum(0.0, s_to_zn - chem.s_opt)
    deficit_s = np.maximum(0.0, chem.s_opt - s_to_zn)
    over = np.maximum(0.0, h - chem.critical_ml)
    k_nr = (chem.k_surf_rel * np.exp(-h / chem.passivation_ml)
            + chem.k_strain_rel * over ** 2
            + chem.k_base_rel
            + chem.k_sulfur_excess_rel * excess_s
            + chem.k_sulfur_deficit_rel * deficit_s
            + chem.k_p_mismatch_rel * ln_p_sq
            + chem.k_hot_rel * np.sqrt(hot_exposure / 15.0)
            + chem.k_residual_rel * residual)
    qy_band = 1.0 / (1.0 + k_nr)
    qy_trap = chem.trap_qy_max * np.exp(-h / chem.trap_ml)
    sig_strain = chem.strain_sigma_ev * -np.expm1(-over / chem.strain_width_ml)
    sig_s = chem.sulfur_sigma_ev * excess_s
    return ShellState(shell_ml=h, alloy_a=alloy, qy_band=qy_band, qy_trap=qy_trap,
                      sigma_extra_ev=np.sqrt(sig_strain ** 2 + sig_s ** 2))


def bare_shell(n: int) -> ShellState:
    """A "shell state" for bare cores (core-only product): no shell, no alloying.

    Bare aminophosphine InP cores are barely emissive; the QY here is nominal.
    """
    z = np.zeros(n)
    return ShellState(shell_ml=z, alloy_a=z, qy_band=np.full(n, 0.01), qy_trap=np.full(n, 0.02),
                      sigma_extra_ev=z)


def failure_probabilities(c: ConditionArrays, core: CoreState, shell: ShellState,
                          failures: FailureParams, *,
                          profile: TankProfile | None = None) -> dict[str, FloatArray]:
    """Probability of each failure mode per condition set, arrays of shape ``(n,)``.

    * ``clogging``: InP deposits when the core runs hot *and* long (over-grown, poorly
      stabilized particles stick to the PTFE), or ZnS deposits when excess sulfur meets a hot
      shell stage (homogeneous ZnS nucleation). Logistic in the relative distance past both
      thresholds, so it switches on over a few °C / minutes.
    * ``no_emission``: core too cold to nucleate, too little In converted, or QY below the floor.

    With a per-tank ``profile`` the hottest core tank and the hottest shell tank set the
    clogging gates (deposits form where it is hottest) and the nucleation tank (tank 1) the
    "too cold to nucleate" test; a uniform profile gives the stage temperatures.

    Gas bubbles (horizontal cascade) do not depend on conditions; the twin adds them.
    """
    f = failures
    t_core_hot = c.t_core_c if profile is None else profile.core_t_c.max(axis=1)
    t_shell_hot = c.t_shell_c if profile is None else profile.shell_t_c.max(axis=1)
    t_nucleation = c.t_core_c if profile is None else profile.core_t_c[:, 0]

    def gate(x: FloatArray, x0: float) -> FloatArray:
        return np.asarray(1.0 / (1.0 + np.exp(-(x / x0 - 1.0) / f.clog_width)), dtype=np.float64)

    hot_core = gate(t_core_hot, f.clog_t_core_c) * gate(c.tau_core_min, f.clog_tau_core_min)
    zns = gate(c.s_to_zn, f.clog_s_to_zn) * gate(t_shell_hot, f.clog_t_shell_c)
    clog = 1.0 - (1.0 - hot_core) * (1.0 - zns)
    qy = shell.qy_band + shell.qy_trap
    none = np.where((t_nucleation < f.min_core_c) | (core.conversion < f.min_conversion)
                    | (qy < f.min_qy), 1.0, 0.0)
    return {"clogging": clog, "no_emission": none}


def inp_mass_rate_g_h(flow_ml_min: FloatArray | float, in_conc_m: float,
                      conversion: FloatArray | float, molar_mass_g_mol: float) -> FloatArray:
    """InP production rate of the core stage, g/h: ``Q · c_In · X · M``."""
    q = np.asarray(flow_ml_min, dtype=np.float64)
    return np.asarray(q * 60.0 / 1000.0 * in_conc_m * np.asarray(conversion) * molar_mass_g_mol,
                      dtype=np.float64)


def describe_model() -> str:
    """One line naming the model, for the event log and metadata."""
    return (f"segregated tanks-in-series core growth ({N_AGE_NODES}-node Erlang quadrature), "
            f"Arrhenius ZnS shell, passivation QY; ZnS ML = {ZNS_MONOLAYER_A} Å; "
            f"R = {R_KJ_MOL_K * 1000:.3f} J/mol/K")
