"""The Ocean detector with a light path that cannot say how it is (a GPIO box): what the absorbance
method lets the frames themselves prove, and the exposure FIFO after a light change.

The detector is the seabreeze stand-in of ``test_ocean.py`` (no USB spectrometer exists here),
extended so that each frame holds the light that shone when its exposure began: seabreeze's
free-running FIFO. The light path is a plain object with ``configure`` and no ``check``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import ConfigError, DeviceFault, HardwareError
from autolab.executors.simulated import SimulatedExecutor
from autolab.hardware.base import Watched
from autolab.hardware.ocean import LIGHT_MIN_SIGMAS, SeabreezeSpectrometer, light_shortfall
from autolab.records import Conditions

from .test_ocean import FakeOcean

DARK = 1000.0
READ_NOISE = 8.0


class GpioLight:
    """Switches lamp, LED, shutter and cell; cannot report anything (no ``check``)."""

    def __init__(self) -> None:
        self.state = ("OFF", False, "SAMPLE")
        self.lamp_failed = False
        self.led_failed = False

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        self.state = (source, shutter_open, cell)


class LitOcean(FakeOcean):
    """Frames of what the light path shone when each exposure began (the FIFO)."""

    def __init__(self, light: GpioLight) -> None:
        super().__init__()
        self.light = light
        self.rng = np.random.default_rng(0)
        self._exposing = light.state

    def intensities(self, correct_dark_counts: bool = False,
                    correct_nonlinearity: bool = False) -> np.ndarray:
        super().intensities(correct_dark_counts, correct_nonlinearity)  # FIFO of the time
        (source, shutter_open, cell), self._exposing = self._exposing, self.light.state
        wl = self.wavelengths()
        signal = np.zeros_like(wl)
        if shutter_open and source == "ABS" and not self.light.lamp_failed:
            signal = 20000.0 * np.exp(-0.5 * ((wl - 600.0) / 150.0) ** 2)
        elif shutter_open and source == "EXC" and cell == "DYE" and not self.light.led_failed:
            signal = 3000.0 * np.exp(-0.5 * ((wl - 552.0) / 17.0) ** 2)
        return DARK + signal + self.rng.normal(0.0, READ_NOISE, wl.size)


def _frame(spec: SeabreezeSpectrometer, source: str, shutter_open: bool, cell: str = "SAMPLE",
           integration_ms: float = 20.0) -> np.ndarray:
    spec.set_integration_ms(integration_ms)  # the procedure's order: time, light, frame
    spec.configure(source=source, shutter_open=shutter_open, cell=cell)
    return spec.acquire()


def test_a_frame_holds_the_light_set_for_it_not_the_previous_setting() -> None:
    """The FIFO (luxpy's Ocean Optics notes): the spectrum a call returns was exposed before it. The
    stale one was discarded with the integration time, before the light path changed, so a lamp
    frame right after a dark one was dark (and a dark right after a lamp frame held the lamp)."""
    light = GpioLight()
    spec = SeabreezeSpectrometer(LitOcean(light), light, excitation_nm=405.0)
    dark = _frame(spec, "OFF", False)
    lamp = _frame(spec, "ABS", True)
    dark_again = _frame(spec, "OFF", False)
    assert dark.max() < DARK + 10 * READ_NOISE
    assert lamp.max() > DARK + 15000.0
    assert dark_again.max() < DARK + 10 * READ_NOISE


def test_no_light_in_a_lamp_or_dye_frame_is_a_device_fault_without_a_read_back() -> None:
    """The light path cannot report, so a burnt-out lamp or LED shows only in the frame: a lamp
    frame and a dye frame under excitation must rise above the dark of their integration time.
    A sample frame under excitation is not judged (a sample that does not emit is chemistry)."""
    light = GpioLight()
    assert not isinstance(light, Watched)
    spec = SeabreezeSpectrometer(LitOcean(light), light, name="ocean1", excitation_nm=405.0)
    _frame(spec, "OFF", False, integration_ms=20.0)
    _frame(spec, "OFF", False, integration_ms=200.0)
    _frame(spec, "ABS", True)  # healthy: no fault
    _frame(spec, "EXC", True, "DYE", integration_ms=200.0)
    light.lamp_failed = True
    with pytest.raises(DeviceFault, match=r"ocean1: no light in the ABS frame of the SAMPLE "
                                          r"cell: .* the lamp, LED or shutter failed and the "
                                          r"light path cannot say so, or the sample cell passes "
                                          r"no light at any wavelength \(a deposit or a clog"):
        _frame(spec, "ABS", True)
    light.led_failed = True
    with pytest.raises(DeviceFault, match=r"no light in the EXC frame of the DYE cell: .* "
                                          r"cannot say so; experiment invalid"):
        _frame(spec, "EXC", True, "DYE", integration_ms=200.0)
    dark_sample = _frame(spec, "EXC", True, "SAMPLE", integration_ms=200.0)  # not judged
    assert dark_sample.max() < DARK + 10 * READ_NOISE


def test_a_lit_frame_without_a_dark_of_its_integration_time_is_not_judged() -> None:
    light = GpioLight()
    spec = SeabreezeSpectrometer(LitOcean(light), light, excitation_nm=405.0)
    _frame(spec, "OFF", False, integration_ms=20.0)
    light.lamp_failed = True
    _frame(spec, "ABS", True, integration_ms=40.0)  # no dark at 40 ms yet: nothing to compare


@settings(max_examples=60, deadline=None)
@given(offset=st.floats(0.0, 5000.0), noise=st.floats(0.5, 50.0), seed=st.integers(0, 2**16),
       pattern=st.floats(0.0, 200.0))
def test_light_shortfall_tells_no_light_from_a_band_of_light(offset: float, noise: float,
                                                              seed: int, pattern: float) -> None:
    """Any dark level, read noise and fixed pattern: a frame of the dark's own noise holds no
    light; one with 3 % of its pixels well above the dark holds light. (A fixed pattern that
    changes from pixel to pixel raises the noise estimate of one dark, and with it the
    threshold: the lit frame here is well above it; see the next test for a dim one.)"""
    rng = np.random.default_rng(seed)
    fixed = pattern * np.sin(np.arange(1024) / 7.0)  # fixed pattern: in the dark and the frame
    dark = offset + fixed + rng.normal(0.0, noise, 1024)
    unlit = offset + fixed + rng.normal(0.0, noise, 1024)
    assert light_shortfall(unlit, dark) != ""
    lit = unlit.copy()
    lit[500:531] += 2 * LIGHT_MIN_SIGMAS * max(noise + pattern, 1.0)
    assert light_shortfall(lit, dark) == ""


def test_a_correction_the_detector_cannot_make_is_refused_at_connect_naming_the_field() -> None:
    """python-seabreeze: ``correct_nonlinearity`` raises on a detector without stored coefficients.
    It was found at the campaign's first frame (a device failure, the rig to its safe state); now
    the rig's connect names the devices-file field to change."""
    light = GpioLight()
    dev = LitOcean(light)
    dev.has_nonlinearity = False
    spec = SeabreezeSpectrometer(dev, light, name="ocean1", excitation_nm=405.0)
    with pytest.raises(ConfigError, match=r"devices\.ocean1\.correct_nonlinearity=true, but the "
                                          r"detector FLMS12345 cannot .* set "
                                          r"correct_nonlinearity: false"):
        spec.connect()
    SeabreezeSpectrometer(dev, light, excitation_nm=405.0, correct_nonlinearity=False).connect()
    dev.unplugged = True  # connect's first call (the trigger mode) finds it
    with pytest.raises(HardwareError, match=r"trigger_mode\(0\) failed: SeaBreezeError: Data "
                                            r"transfer error"):
        SeabreezeSpectrometer(dev, light, excitation_nm=405.0,
                              correct_nonlinearity=False).connect()


class _SimDetector:
    """seabreeze's surface over the simulated rig's optics (frames of the twin's outlet)."""

    model, serial_number, max_intensity = "FLAME-S", "FLMS12345", 65535.0
    integration_time_micros_limits = (1000, 65_000_000)

    def __init__(self, optics: Any) -> None:
        self.optics = optics

    def wavelengths(self) -> np.ndarray:
        return np.asarray(self.optics.wavelengths_nm)

    def integration_time_micros(self, us: int) -> None:
        self.optics.set_integration_ms(us / 1000.0)

    def intensities(self, correct_dark_counts: bool = False,
                    correct_nonlinearity: bool = False) -> np.ndarray:
        return np.asarray(self.optics.acquire())


class _SimGpioLight:
    """The simulated rig's light path, driven as a GPIO box (no read-back); can burn out."""

    def __init__(self, optics: Any) -> None:
        self.optics = optics
        self.lamp_failed = False

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        lit = "OFF" if self.lamp_failed and source == "ABS" else source
        self.optics.configure(source=lit, shutter_open=shutter_open, cell=cell)


#: Two products the twin makes (seed 3 completes both): a bright one and a dim, early one.
CONDITIONS = [
    Conditions(t_core_c=180, tau_core_min=13, t_shell_c=280, tau_shell_min=15, cl_to_i=6,
               s_to_zn=2),
    Conditions(t_core_c=150, tau_core_min=5, t_shell_c=200, tau_shell_min=5, cl_to_i=10,
               s_to_zn=1, p_to_in=2),
]


def test_the_level_check_passes_every_frame_of_real_experiments_and_finds_a_dead_lamp() -> None:
    """The procedure on the simulated rig, its optics read as an Ocean with a GPIO light path:
    no frame of two completed experiments is taken for a light failure (blank, sample and dye
    frames; the twin's lowest lit frame is ~4700 dark sigmas above its dark, the threshold 10),
    and a lamp that burns out between experiments is found in the next one's first lamp
    frame."""
    ex = SimulatedExecutor(seed=3)
    optics = ex.session.spectrometer
    light = _SimGpioLight(optics)
    ex.session.spectrometer = SeabreezeSpectrometer(  # type: ignore[assignment]
        _SimDetector(optics), light, name="ocean1", excitation_nm=optics.excitation_nm,
        path_length_cm=optics.path_length_cm)
    for c in CONDITIONS:
        assert ex.run(c).spectra.dye_pl_counts.size == optics.wavelengths_nm.size
    light.lamp_failed = True
    with pytest.raises(DeviceFault, match=r"ocean1: no light in the ABS frame"):
        ex.run(CONDITIONS[0])


def _ccd_dark(rng: np.random.Generator, fixed: np.ndarray) -> np.ndarray:
    """A dark frame of a linear CCD: offset, its fixed pattern, 8 counts of read noise."""
    return 1500.0 + fixed + rng.normal(0.0, READ_NOISE, fixed.size)


def test_a_dim_lit_frame_on_a_detector_with_a_fixed_pattern_is_light_not_a_fault() -> None:
    """A real linear CCD's dark has a fixed pattern from pixel to pixel (odd and even pixels
    read through two output amplifiers with different offsets, and each pixel's own dark
    signal) that is the same in the dark and the lit frame, so it cancels in ``frame - dark``.
    The noise was taken from the dark's neighbour differences, which hold that pattern: a
    ±30-count odd/even offset and 15 counts of pixel-to-pixel dark signal made the threshold
    ~600 counts, and a dye frame 300 counts above the dark (a dilute reference dye at an
    integration time chosen for bright samples: 35 read-noise sigmas) was a DeviceFault.
    Differences of same-parity pixels (one dark) or of two darks of one integration time
    (the procedure takes two per experiment at the emission integration time) leave the read
    noise; a frame with no light still faults."""
    rng = np.random.default_rng(5)
    px = np.arange(2048)
    fixed = 30.0 * np.where(px % 2 == 0, 1.0, -1.0) + rng.normal(0.0, 15.0, px.size)
    dye = 300.0 * np.exp(-0.5 * ((px - 900.0) / 40.0) ** 2)  # ~4 % of the pixels lit
    dark = _ccd_dark(rng, fixed)
    assert light_shortfall(_ccd_dark(rng, fixed) + dye, dark) == ""
    assert light_shortfall(_ccd_dark(rng, fixed), dark) != ""
    light = GpioLight()
    spec = SeabreezeSpectrometer(FixedPatternOcean(light, fixed, dye), light, name="ocean1",
                                 excitation_nm=405.0)
    for _ in range(2):  # one dark, then two darks of the integration time
        _frame(spec, "OFF", False, integration_ms=200.0)
        _frame(spec, "EXC", True, "DYE", integration_ms=200.0)  # no fault
    spec.device.dye = 0.0 * dye  # the LED went out
    with pytest.raises(DeviceFault, match=r"no light in the EXC frame of the DYE cell"):
        _frame(spec, "EXC", True, "DYE", integration_ms=200.0)


class FixedPatternOcean(FakeOcean):
    """A CCD whose dark holds a fixed pattern; the dye cell under excitation adds ``dye``."""

    def __init__(self, light: GpioLight, fixed: np.ndarray, dye: np.ndarray) -> None:
        super().__init__()
        self.light, self.fixed, self.dye = light, fixed, dye
        self.rng = np.random.default_rng(11)

    def wavelengths(self) -> np.ndarray:
        return np.linspace(350.0, 1000.0, self.fixed.size)

    def intensities(self, correct_dark_counts: bool = False,
                    correct_nonlinearity: bool = False) -> np.ndarray:
        lit = self.light.state == ("EXC", True, "DYE")
        return _ccd_dark(self.rng, self.fixed) + (self.dye if lit else 0.0)


class _HiccupOcean(LitOcean):
    """A detector with nonlinearity coefficients whose next ``n`` frames fail (a USB hiccup)."""

    def __init__(self, light: GpioLight, fail_next: int) -> None:
        super().__init__(light)
        self.fail_next = fail_next

    def intensities(self, correct_dark_counts: bool = False,
                    correct_nonlinearity: bool = False) -> np.ndarray:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("Data transfer error")
        return super().intensities(correct_dark_counts, correct_nonlinearity)


def test_a_transfer_error_at_connect_is_not_taken_for_missing_coefficients() -> None:
    """One failed frame with the correction then one without it did not prove the detector
    cannot correct: a transfer error on the first was told as 'set correct_nonlinearity:
    false', a devices-file change that makes every later frame uncorrected. The corrected
    frame is tried again once the detector has delivered one; only its second failure is the
    ConfigError."""
    light = GpioLight()
    SeabreezeSpectrometer(_HiccupOcean(light, fail_next=1), light, name="ocean1",
                          excitation_nm=405.0).connect()  # no error: the detector corrects
    dev = _HiccupOcean(light, fail_next=0)
    dev.has_nonlinearity = False
    with pytest.raises(ConfigError, match=r"devices\.ocean1\.correct_nonlinearity=true"):
        SeabreezeSpectrometer(dev, light, name="ocean1", excitation_nm=405.0).connect()
