"""Frozen, validated configuration of the digital twin.

Every knob of the twin lives here, with its unit in its name. The chemistry constants were fitted
(offline, with :mod:`autolab.twin.calibrate`) to the seed-paper table in docs/architecture.md
(Lignos et al., React. Chem. Eng. 2021, 6, 459); they are model parameters of a mechanistic twin,
not measured physical constants, and should be refitted when real CSTR data arrive.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid")

#: Molar mass of InP, g/mol (In 114.82 + P 30.97): the twin's product mass and the rig's
#: upper bound of it (In fed, counted as InP) use this one value.
INP_MOLAR_MASS_G_MOL = 145.8


class ChemistryParams(BaseModel):
    """Kinetic and passivation constants of the InP core and ZnS shell stages.

    Fitted (``python -m autolab.twin.calibrate``) to the seed-paper rows *and* to the overall row
    over the optimizer's box (FWHM band in the emission window, QY ceiling and fall-off); bounds
    in the fit keep the core conversion at a few tenths per minute at 180 °C, so that residence
    time and the RTD shape the size distribution. ``p_to_in``-, sulfur- and residual-precursor
    QY terms sit at the fit's lower bounds (the paper rows do not pin them).

    Rates are Arrhenius with a reference temperature (k = k_ref·exp[-Ea/R·(1/T - 1/T_ref)]) so
    that each prefactor is the rate at a temperature inside the explored range, which keeps the
    fit well conditioned. Thicknesses are in ZnS monolayers (ML, ~0.31 nm), sizes are tetrahedron
    edge lengths in ångström (the Almeida 2023 sizing-curve convention).
    """

    model_config = _FROZEN

    # --- core (InP) stage ---------------------------------------------------------------------
    t_ref_core_c: float = Field(180.0, description="Reference temperature of core rates, °C.")
    k_conv_ref_per_min: float = Field(
        0.40626, gt=0,
        description="First-order In-precursor conversion rate at t_ref_core_c, 1/min.")
    ea_conv_kj_mol: float = Field(
        50.583, ge=0, description="Activation energy of precursor conversion, kJ/mol.")
    p_stoich: float = Field(
        4, gt=0, description="P:In giving full In conversion (4 P(III) -> P(-III) + 3 P(V)).")
    p_opt: float = Field(
        3.6, gt=0, description="P:In of the narrowest cores (seed paper optimum at 180 °C).")
    iodide_nuclei_gain: float = Field(
        24.393, ge=0,
        description="Relative increase of nuclei per unit iodide fraction I/(Cl+I): iodide "
                    "binds the InP surface, speeds nucleation and arrests growth.")
    iodide_nuclei_exponent: float = Field(
        1.5613, gt=0, description="Nuclei count rises as gain·f**exponent with iodide fraction f.")
    ea_nuclei_kj_mol: float = Field(
        25.274, description="Apparent activation energy of the nuclei count, kJ/mol (positive: "
                           "more, smaller dots at higher core temperature).")
    p_nuclei_exponent: float = Field(
        0.97482, description="Nuclei count scales as (P:In / p_opt)**exponent (more reactive "
                         "aminophosphine -> more nuclei).")
    seed_edge_a: float = Field(
        14.846, gt=0, description="Edge length of the magic-size-cluster seeds, Å.")
    growth_edge_a: float = Field(
        33.7, gt=0, description="Edge length reached at full conversion with the chloride-only "
                                "nuclei count at t_ref_core_c and p_opt, Å (sets the monomer "
                                "volume per nucleus).")
    surface_rate_exponent: float = Field(
        0.33, ge=0, description="Conversion rate scales as nuclei**exponent (more particle "
                                "surface consumes monomer faster).")
    cv_nucleation_ref: float = Field(
        0.10107, ge=0, description="Relative size spread from the nucleation burst width at "
                                "t_ref_core_c, chloride only.")
    ea_nucleation_cv_kj_mol: float = Field(
        7.412, ge=0, description="Burst width narrows as nucleation speeds up with T, kJ/mol.")
    k_ripening_ref_per_min: float = Field(
        0.0059302, ge=0, description="Ostwald-ripening coarsening rate at t_ref_core_c, 1/min (dot "
                                 "count of a fluid element falls as 1/(1 + k·t)).")
    ea_ripening_kj_mol: float = Field(
        97.505, ge=0, description="Activation energy of ripening (defocusing), kJ/mol.")
    shell_growth_fraction: float = Field(
        0.89916, ge=0, le=1, description="Share of the In precursor left at the core outlet that "
                                     "deposits on the cores in the hot shell stage (the rest "
                                     "ends in the In-rich interface / alloy).")
    iodide_cv_gain: float = Field(
        7.7696, ge=0, description="Burst narrowing by iodide: the burst spread divides by "
                               "1 + gain·f**exponent (f = I/(Cl+I); faster, more uniform "
                               "nucleation).")
    iodide_cv_exponent: float = Field(
        1.9782, gt=0, description="Exponent of the iodide narrowing of the burst.")
    cv_nucleation_floor: float = Field(
        0.087821, ge=0, description="Relative size spread that no burst is narrower than "
                                    "(spread of nucleation times within one burst).")
    cv_ripening_max: float = Field(
        0.026974, ge=0,
        description="Relative size spread of the fully ripened (LSW-like) ensemble.")
    cv_p_mismatch: float = Field(
        0.029616, ge=0, description="Added size spread (in quadrature) far from p_opt: "
                                "cv_p_mismatch·tanh(|ln(P:In/p_opt)| / p_mismatch_scale).")
    p_mismatch_scale: float = Field(
        0.1, gt=0, description="ln(P:In/p_opt) over which the P:In spread saturates.")
    # --- shell (ZnS) stage --------------------------------------------------------------------
    t_ref_shell_c: float = Field(290.0, description="Reference temperature of shell rates, °C.")
    k_shell_ref_per_min: float = Field(
        0.054758, gt=0, description="ZnS deposition rate constant at t_ref_shell_c, 1/min.")
    ea_shell_kj_mol: float = Field(
        207.92, ge=0,
        description="Activation energy of ZnS deposition (low Zn reactivity), kJ/mol.")
    shell_dose_ml: float = Field(
        2.1748, gt=0, description="Shell thickness at full Zn/S use and S:Zn >= s_opt, monolayers.")
    s_opt: float = Field(2, gt=0, description="S:Zn needed to use all Zn (seed paper: 2).")
    alloy_depth_ref_a: float = Field(
        4.8038, ge=0,
        description="Interface alloying/etching depth at t_ref_shell_c after 15 min, Å "
                               "(shrinks the effective core: the 563 -> 558 nm blue shift).")
    ea_alloy_kj_mol: float = Field(
        18.235, ge=0,
        description="Activation energy of alloying, kJ/mol.")
    shell_redshift_ev: float = Field(
        0.0065291, ge=0, description="Band-edge red shift of a thick ZnS shell on a 30 Å core, eV.")
    shell_leak_ml: float = Field(1, gt=0, description="Shell thickness scale of the red shift.")
    stokes_ev: float = Field(0.15334, ge=0, description="Stokes shift of a 30 Å core, eV.")
    stokes_size_exponent: float = Field(
        0.92875, ge=0, description="Stokes shift scales as (30 Å / L)**exponent.")
    # --- quantum yield (rates relative to the radiative rate) ---------------------------------
    k_surf_rel: float = Field(18.625, ge=0, description="Unpassivated surface trapping rate / k_r.")
    passivation_ml: float = Field(
        0.40273, gt=0,
        description="Shell thickness that cuts traps by e.")
    k_strain_rel: float = Field(
        3.7648, ge=0,
        description="Misfit-defect rate per ML² above h_c / k_r.")
    critical_ml: float = Field(
        1.1161, ge=0,
        description="Critical ZnS thickness for misfit defects.")
    k_base_rel: float = Field(0.3299, ge=0, description="Residual nonradiative rate / k_r.")
    k_sulfur_excess_rel: float = Field(
        0.3, ge=0, description="S-rich surface (hole-trap) rate per unit S:Zn above s_opt / k_r.")
    k_sulfur_deficit_rel: float = Field(
        0.50375, ge=0, description="Zn-rich, S-poor surface (anion vacancies) rate per unit S:Zn "
                               "below s_opt / k_r.")
    k_hot_rel: float = Field(
        0.037148, ge=0, description="High-temperature interfacial damage (In/Zn interdiffusion, "
                               "etching) rate at t_ref_shell_c after 15 min / k_r; grows as "
                               "sqrt(time).")
    ea_hot_kj_mol: float = Field(
        246.4, ge=0, description="Activation energy of the interfacial damage, kJ/mol.")
    k_residual_rel: float = Field(
        1.0002, ge=0, description="Defect rate from unreacted core precursor carried into the hot "
                               "shell stage (In-rich interface), per unit residual fraction / k_r.")
    k_p_mismatch_rel: float = Field(
        1, ge=0, description="Core-defect rate per unit ln(P:In/p_opt)² / k_r.")
    trap_qy_max: float = Field(
        0.044327, ge=0, description="Trap-emission yield of a bare core (deep-trap tail).")
    trap_ml: float = Field(
        1.2268, gt=0,
        description="Shell thickness that cuts trap emission by e.")
    trap_offset_ev: float = Field(0.034004, ge=0, description="Trap band below the band edge, eV.")
    trap_sigma_ev: float = Field(0.12, gt=0, description="Gaussian sigma of the trap band, eV.")
    strain_sigma_ev: float = Field(
        0.031936, ge=0,
        description="Max inhomogeneous broadening (sigma) from strain disorder, eV.")
    strain_width_ml: float = Field(0.45129, gt=0, description="Thickness above h_c to reach it.")
    sulfur_sigma_ev: float = Field(
        0.0020857, ge=0, description="Broadening (sigma) per unit S:Zn above s_opt, eV.")
    # --- flow-chemistry side effects ---------------------------------------------------------
    gas_volume_fraction: float = Field(
        0.15, ge=0, lt=1, description="Core-tank volume taken by trapped gas when horizontal.")
    gas_cv: float = Field(0.05, ge=0, description="Extra size spread from gas slugs (horizontal).")
    stir_ref_rpm: float = Field(
        600.0, gt=0, description="Stirring rate at and above which the tanks mix ideally, rpm "
                                 "(the twin's fitted rows ran there).")
    cv_mixing_ref: float = Field(
        0.02, ge=0, description="Added nucleation-burst spread (in quadrature) from mixing-"
                                "limited nucleation: cv_mixing_ref·((stir_ref_rpm/rpm)^1.5 - 1) "
                                "below stir_ref_rpm (micromixing time ∝ rpm^-1.5).")
    inp_molar_mass_g_mol: float = Field(INP_MOLAR_MASS_G_MOL, gt=0,
                                        description="Molar mass of InP, g/mol.")


class OpticsParams(BaseModel):
    """Optical constants: sizing curve, line shapes, absorption model, sample dilution."""

    model_config = _FROZEN

    e_bulk_ev: float = Field(1.33, description="Almeida sizing-curve offset, eV.")
    sizing_coef_ev: float = Field(9.128, description="Almeida coefficient (L in Å), eV.")
    sizing_exponent: float = Field(0.684, description="Almeida exponent on L (Å).")
    hom_fwhm_green_mev: float = Field(80.0, gt=0, description="Single-dot FWHM at 2.4 eV, meV.")
    hom_fwhm_red_mev: float = Field(60.0, gt=0, description="Single-dot FWHM at 2.0 eV, meV.")
    second_transition_ev: float = Field(0.22, ge=0, description="1P-like transition above 1S, eV.")
    second_rel: float = Field(0.25, ge=0, description="Height of the 2nd transition / 1S.")
    continuum_rel: float = Field(
        1.6, ge=0, description="Continuum height / 1S far above the gap (absorbance per InP "
                               "amount is size independent there).")
    continuum_onset_ev: float = Field(0.5, description="Continuum onset above 1S, eV.")
    continuum_width_ev: float = Field(0.25, gt=0, description="Continuum onset width, eV.")
    scatter_rel: float = Field(0.01, ge=0, description="Rayleigh baseline at 400 nm / 1S.")
    absorbance_1s_full: float = Field(
        0.08, gt=0, description="1S peak absorbance in the cell at full In conversion (after "
                                "the inline dilution), keeps A at excitation ~0.1 (linear).")


class DetectorParams(BaseModel):
    """The inline spectrometer: grid, counts, noise, and the relative-QY geometry."""

    model_config = _FROZEN

    n_pixels: int = Field(1024, ge=64)
    wavelength_min_nm: float = Field(350.0, gt=0)
    wavelength_max_nm: float = Field(850.0, gt=0)
    full_scale_counts: float = Field(65535.0, gt=0)
    dark_offset_counts: float = Field(1000.0, ge=0)
    read_noise_counts: float = Field(8.0, ge=0)
    gain_counts_per_electron: float = Field(
        1.0, gt=0, description="Counts per photoelectron (shot noise variance = counts*gain).")
    abs_integration_ms: float = Field(20.0, gt=0)
    pl_integration_ms: float = Field(200.0, gt=0)
    lamp_peak_counts: float = Field(
        40000.0, gt=0, description="Blank-frame peak counts above dark at abs_integration_ms.")
    excitation_nm: float = Field(405.0, gt=0)
    pl_counts_per_ms: float = Field(
        3.75e5, gt=0, description="Instrument constant K per ms of integration (see optics): "
                                 "sample PL peaks ~1-2e4 counts above dark at QY 0.2-0.4, the "
                                 "dye frame ~5e4, below saturation.")
    path_length_cm: float = Field(0.1, gt=0)
    dye_peak_nm: float = Field(552.0, gt=0, description="Rhodamine 6G emission peak.")
    dye_fwhm_nm: float = Field(40.0, gt=0, description="Rhodamine 6G emission FWHM.")

    @model_validator(mode="after")
    def _check(self) -> DetectorParams:
        if not self.wavelength_min_nm < self.excitation_nm < self.wavelength_max_nm:
            raise ValueError(
                f"excitation_nm={self.excitation_nm:g} must lie inside the grid "
                f"[{self.wavelength_min_nm:g}, {self.wavelength_max_nm:g}] nm")
        if not self.wavelength_min_nm < self.wavelength_max_nm:
            raise ValueError("wavelength_min_nm must be below wavelength_max_nm")
        return self


class NoiseParams(BaseModel):
    """Process and measurement noise (all seeded from (seed, run index))."""

    model_config = _FROZEN

    temperature_jitter_c: float = Field(0.7, ge=0, description="Setpoint error, °C (1 sigma).")
    flow_jitter_rel: float = Field(0.015, ge=0, description="Pump flow error, relative.")
    ratio_jitter_rel: float = Field(0.01, ge=0, description="Feed-ratio error, relative.")
    qy_readout_rel: float = Field(
        0.05, ge=0, description="Relative error of the QY readout (excitation drift between "
                                "sample and dye frames).")
    shot_noise: bool = Field(True, description="Poisson-like shot noise on counts.")


class FailureParams(BaseModel):
    """Where and how often experiments fail (seeded draws)."""

    model_config = _FROZEN

    clog_t_core_c: float = Field(214.0, description="Core T above which InP deposits clog.")
    clog_tau_core_min: float = Field(24.0, description="...when the core residence also exceeds.")
    clog_s_to_zn: float = Field(3.6, description="S:Zn above which ZnS deposits clog...")
    clog_t_shell_c: float = Field(312.0, description="...when the shell T also exceeds this.")
    clog_width: float = Field(0.01, gt=0, description="Relative softness of the clog threshold.")
    min_core_c: float = Field(
        140.0, description="Below this core temperature aminophosphine InP does not nucleate "
                           "(transamination/disproportionation too slow): no emission.")
    min_conversion: float = Field(
        0.05, gt=0, description="Below this In conversion there is no emission to measure.")
    min_qy: float = Field(0.005, ge=0, description="Below this QY the emission counts as none.")
    bubble_probability_horizontal: float = Field(
        0.25, ge=0, le=1, description="Chance per run that gas slugs spoil a horizontal run.")
    base_failure_probability: float = Field(
        0.0, ge=0, le=1, description="Chance of an unexplained failure (pump stall) per run.")


class TwinConfig(BaseModel):
    """Configuration of the digital twin of the InP/ZnS CSTR cascade.

    The default reactor is the paper's: 3 core + 4 shell tanks, vertical, 0.05 M In. The tank
    volume of 29 mL makes the core throughput 1.2 g/h of InP at 27.5 min core residence
    (seed paper: "0.05 M ... 25–30 min ... 1.2 g h⁻¹"; see :func:`autolab.twin.cascade.throughput`).
    """

    model_config = _FROZEN

    n_core_tanks: int = Field(3, ge=3, le=4, description="CSTRs in the core stage (paper: 3–4).")
    n_shell_tanks: int = Field(4, ge=3, le=5, description="CSTRs in the shell stage (paper: 3–5).")
    tank_volume_ml: float = Field(29.0, gt=0, description="Working volume of each CSTR, mL.")
    in_conc_m: float = Field(0.05, gt=0, description="In concentration in the core stream, mol/L.")
    phosphine_stock_m: float = Field(1.0, gt=0, description="Aminophosphine feed stock, mol/L.")
    shell_feed_fraction: float = Field(
        0.3, gt=0, lt=1, description="Share of the shell-stage flow that is Zn/S shell feed.")
    orientation: Literal["vertical", "horizontal"] = "vertical"
    heating_rate_c_per_min: float = Field(10.0, gt=0, description="Block heating rate, °C/min.")
    cooling_rate_c_per_min: float = Field(5.0, gt=0, description="Block cooling rate, °C/min.")
    ambient_c: float = Field(25.0, description="Block temperature of an idle reactor, °C.")
    settle_residence_times: float = Field(
        3.0, ge=3, description="Wait this many mean residence times per stage before reading.")
    flush_residence_times: float = Field(
        1.0, ge=0, description="Solvent flush between experiments, in cascade residence times.")
    trace_frames: int = Field(12, ge=0, description="Emission frames taken while settling.")
    acquire_min: float = Field(2.0, ge=0, description="Time to take the spectra, min.")
    chemistry: ChemistryParams = ChemistryParams()
    optics: OpticsParams = OpticsParams()
    detector: DetectorParams = DetectorParams()
    noise: NoiseParams = NoiseParams()
    failures: FailureParams = FailureParams()
