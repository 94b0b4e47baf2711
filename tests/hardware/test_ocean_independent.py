"""The Ocean driver against a python-seabreeze written from the manual alone.

Our own stand-in was written by the driver's authors, so a misreading shared by both would hide.
The fake ``seabreeze`` package below was written from the hardware reference (§3 Ocean Insight
via python-seabreeze and its acquisition procedure, §0, §5) without reading that stand-in or its
tests. It is put on ``sys.modules`` where :func:`autolab.hardware.ocean.open_seabreeze` imports
it; nothing of the driver is mocked.

What the manual says, as emulated:

* ``Spectrometer.from_serial_number(sn)`` / ``.from_first_available()``; a unit not there raises
  ``SeaBreezeError``.
* ``integration_time_micros_limits``: a property, µs; ``integration_time_micros(us)``: µs, out of
  range raises ``SeaBreezeError``.
* ``wavelengths()``: nm, cached at open (still answered after the unit is gone).
* ``intensities(correct_dark_counts, correct_nonlinearity)``: a.u.; dark-count correction
  subtracts the mean of the electrically dark pixels (not a dark spectrum); nonlinearity
  correction applies the EEPROM polynomial; either raises ``SeaBreezeError`` if unsupported.
* ``max_intensity``: the saturation level; ``spectrum()`` 2×N; ``trigger_mode(mode)``;
  ``pixels``, ``model``, ``serial_number``.
* the detector free-runs and buffers: the first read after an integration-time change returns
  a spectrum integrated with the old time (the exposure began before the call).

Where the manual is open the fake has a switch (:class:`Readings`). No wall-clock time passes:
an exposure is computed, never waited for.
"""

from __future__ import annotations

import sys
import types
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from autolab.analysis.features import extract_features_batch
from autolab.exceptions import ConfigError, DeviceFault, HardwareError
from autolab.executors.simulated import SimulatedExecutor
from autolab.hardware.ocean import OceanSpec, SeabreezeSpectrometer, open_seabreeze
from autolab.hardware.registry import get_kind
from autolab.records import Conditions, QualityFlag

FloatArray = NDArray[np.float64]
PIXELS = 512
DARK_PIXELS = 8  #: electrically dark (masked) pixels at the start of the array
SERIAL = "FLMS12345"
ABS_MS, PL_MS = 20.0, 200.0  #: the procedure's default integration times
Light = tuple[str, bool, str]  #: (source, shutter open, cell), as the light path was set
OFF: Light = ("OFF", False, "SAMPLE")


class SeaBreezeError(Exception):
    """The fake library's own error (python-seabreeze raises its ``SeaBreezeError`` family)."""


class USBError(OSError):
    """What pyusb raises for a pulled cable (one reading of what a lost unit raises)."""


@dataclass
class Readings:
    """Switches for what the manual leaves open.

    Attributes:
        fifo: How many stale spectra the free-running detector holds (0: a read exposes
            afresh; the manual's notes: one).
        max_intensity: What ``max_intensity`` answers: 65535 or an EEPROM saturation value.
        adc_full: Where the ADC saturates before any rescaling (``None``: at ``max_intensity``);
            lower than ``max_intensity``, counts are rescaled to it ("effective ~15 bit").
        rescaled: The unit rescales counts from ``adc_full`` to ``max_intensity`` (else a
            saturated pixel reads ``adc_full``, below the saturation level it states).
        nonlinearity: The unit has nonlinearity coefficients (else the correction raises).
        dark_pixels: The unit has electrically dark pixels (else the dark correction raises).
        polynomial: The EEPROM polynomial's slope: the corrected count is ``raw / (1 + k *
            raw / max_intensity)``, applied to the clipped ADC count, so a saturated pixel moves
            (k > 0: below full scale; k < 0: above it).
        limits: ``property`` (the manual), ``method`` or ``absent``.
        lost: The error a call raises once the unit is unplugged.
        trigger_modes: The modes ``trigger_mode`` takes (others raise).
    """

    fifo: int = 1
    max_intensity: float = 65535.0
    adc_full: float | None = None
    rescaled: bool = True
    nonlinearity: bool = True
    dark_pixels: bool = True
    polynomial: float = 0.0
    limits: str = "property"
    lost: type[Exception] = SeaBreezeError
    trigger_modes: tuple[int, ...] = (0, 1, 2, 3)


@dataclass(frozen=True)
class Exposure:
    """One frame the detector exposed: its settings when the exposure began, and its counts."""

    integration_us: int
    light: Light
    counts: FloatArray


@dataclass
class Bench:
    """The optics in front of the detector: what each light-path setting shines, counts/µs.

    Attributes:
        light: The light path as the test's light device last set it.
        lamp: Lamp brightness (0: burnt out).
        emission: Sample emission brightness (5 saturates the PL frame at 200 ms).
    """

    light: Light = OFF
    lamp: float = 1.0
    emission: float = 1.0
    wl: FloatArray = field(default_factory=lambda: np.linspace(350.0, 850.0, PIXELS))

    def rate(self) -> FloatArray:
        """Photo-counts per µs on each pixel for the light as set now."""
        source, shutter_open, cell = self.light
        wl, out = self.wl, np.zeros(PIXELS)
        if shutter_open and source == "ABS":
            lamp = 0.8 * self.lamp * np.exp(-0.5 * ((wl - 600.0) / 180.0) ** 2)
            absorb = 0.4 * np.exp(-0.5 * ((wl - 500.0) / 25.0) ** 2) + 0.2 * (wl < 480)
            out = lamp * 10.0 ** (-absorb if cell == "SAMPLE" else 0.0)
        elif shutter_open and source == "EXC":
            peak, width, height = (560.0, 14.0, 0.15 * self.emission) if cell == "SAMPLE" \
                else (610.0, 20.0, 0.12)
            out = height * np.exp(-0.5 * ((wl - peak) / width) ** 2)
            out += 0.01 * np.exp(-0.5 * ((wl - 405.0) / 3.0) ** 2)  # excitation scatter
        out[:DARK_PIXELS] = 0.0  # masked pixels see no light
        return out


class Unit:
    """One spectrometer on the USB bus (the state behind the fake ``Spectrometer``)."""

    def __init__(self, bench: Bench, readings: Readings, serial: str = SERIAL) -> None:
        self.bench, self.r, self.serial = bench, readings, serial
        self.integration_us = 100_000  # power-up default
        self.trigger = 3  #: left in an external-trigger mode by another program
        self.plugged = True
        self.fail_reads = 0
        self.short_reads = 0
        self.calls: list[str] = []
        self.returned: list[Exposure] = []
        self._fifo: deque[Exposure] = deque()
        self._seq = 0
        pattern = np.where(np.arange(PIXELS) % 2, 6.0, -6.0)  # odd/even amplifier offsets
        self._offset = 1000.0 + pattern
        self._refill()

    @property
    def full(self) -> float:
        return self.r.max_intensity

    def _expose(self) -> Exposure:
        """A frame exposed with the settings of this instant (no time passes)."""
        self._seq += 1
        noise = np.random.default_rng(self._seq).normal(0.0, 4.0, PIXELS)
        adc_full = self.r.adc_full or self.full
        light = self.bench.rate() * (adc_full / 65535.0)  # the same share of any unit's range
        raw = self._offset + light * self.integration_us + noise
        raw = np.floor(np.clip(raw, 0.0, adc_full))
        counts = raw * (self.full / adc_full) if self.r.rescaled else raw
        return Exposure(self.integration_us, self.bench.light, counts)

    def _refill(self) -> None:
        while len(self._fifo) < self.r.fifo:
            self._fifo.append(self._expose())

    def alive(self, what: str) -> None:
        """Log the call; a unit unplugged raises the reading's error."""
        self.calls.append(what)
        if not self.plugged:
            raise self.r.lost(f"{what}: [Errno 19] No such device (it may have been "
                              f"disconnected)")

    def read(self) -> Exposure:
        """The oldest buffered frame; the free-running detector buffers the next one."""
        frame = self._fifo.popleft() if self._fifo else self._expose()
        self._refill()
        self.returned.append(frame)
        return frame

    def correct(self, counts: FloatArray, dark: bool, nonlinear: bool) -> FloatArray:
        if dark and not self.r.dark_pixels:
            raise SeaBreezeError("This device does not support dark count correction.")
        if nonlinear and not self.r.nonlinearity:
            raise SeaBreezeError("This device does not support nonlinearity correction.")
        out = counts.copy()
        if nonlinear:
            out = out / (1.0 + self.r.polynomial * out / self.full)
        if dark:
            out -= float(np.mean(counts[:DARK_PIXELS]))
        return out


def fake_seabreeze(units: dict[str, Unit]) -> tuple[types.ModuleType, types.ModuleType]:
    """A ``seabreeze`` package and its ``spectrometers`` module over ``units`` (by serial)."""

    class Spectrometer:
        """python-seabreeze's ``Spectrometer`` as the manual describes it."""

        def __init__(self, unit: Unit) -> None:
            self._u = unit
            self._wl = unit.bench.wl.copy()  # cached at open

        @classmethod
        def from_serial_number(cls, serial: str | None = None) -> Spectrometer:
            for unit in units.values():
                if unit.plugged and (serial is None or unit.serial == serial):
                    return cls(unit)
            raise SeaBreezeError(f"No device attached with serial number '{serial}'.")

        @classmethod
        def from_first_available(cls) -> Spectrometer:
            return cls.from_serial_number(None)

        def __getattr__(self, name: str) -> Any:
            if name == "integration_time_micros_limits" and self._u.r.limits == "method":
                return self._limits
            raise AttributeError(name)

        def _limits(self) -> tuple[int, int]:
            self._u.alive("integration_time_micros_limits")
            return 1_000, 10_000_000

        def integration_time_micros(self, us: int) -> None:
            self._u.alive(f"integration_time_micros({us})")
            lo, hi = 1_000, 10_000_000
            if not lo <= us <= hi:
                raise SeaBreezeError(f"Integration not in [{lo:d}, {hi:d}]")
            self._u.integration_us = int(us)

        def wavelengths(self) -> FloatArray:
            return self._wl

        def intensities(self, correct_dark_counts: bool = False,
                        correct_nonlinearity: bool = False) -> FloatArray:
            u = self._u
            u.alive(f"intensities({correct_dark_counts}, {correct_nonlinearity})")
            if u.fail_reads:
                u.fail_reads -= 1
                raise SeaBreezeError("Data transfer error: timeout")
            frame = u.read()
            out = u.correct(frame.counts, correct_dark_counts, correct_nonlinearity)
            if u.short_reads:
                u.short_reads -= 1
                return out[: PIXELS // 2]
            return out

        def spectrum(self, correct_dark_counts: bool = False,
                     correct_nonlinearity: bool = False) -> FloatArray:
            return np.vstack([self._wl, self.intensities(correct_dark_counts,
                                                         correct_nonlinearity)])

        def trigger_mode(self, mode: int) -> None:
            self._u.alive(f"trigger_mode({mode})")
            if mode not in self._u.r.trigger_modes:
                raise SeaBreezeError(f"Only supports: {self._u.r.trigger_modes}")
            self._u.trigger = mode

        @property
        def max_intensity(self) -> float:
            self._u.alive("max_intensity")
            return self._u.full

        @property
        def pixels(self) -> int:
            self._u.alive("pixels")
            return PIXELS

        @property
        def model(self) -> str:
            self._u.alive("model")
            return "FLAME-S"

        @property
        def serial_number(self) -> str:
            self._u.alive("serial_number")
            return self._u.serial

    def limits(self: Spectrometer) -> tuple[int, int]:
        return self._limits()

    package = types.ModuleType("seabreeze")
    module = types.ModuleType("seabreeze.spectrometers")
    module.Spectrometer = Spectrometer  # type: ignore[attr-defined]
    module.SeaBreezeError = SeaBreezeError  # type: ignore[attr-defined]
    module.list_devices = lambda: [u.serial for u in units.values() if u.plugged]  # type: ignore[attr-defined]
    package.spectrometers = module  # type: ignore[attr-defined]
    package.use = lambda backend: None  # type: ignore[attr-defined]
    if any(u.r.limits == "property" for u in units.values()):
        Spectrometer.integration_time_micros_limits = property(limits)  # type: ignore[attr-defined]
    return package, module


class LightBox:
    """A light path that switches and cannot say how it is (a GPIO box)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        self.bench.light = (source, shutter_open, cell)


@dataclass
class Lab:
    """One unit on the fake bus, the optics in front of it and the light path switching them."""

    bench: Bench
    unit: Unit
    light: LightBox


@pytest.fixture
def lab_of(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Lab]:
    """Put a fake seabreeze with one unit (under ``readings``) on ``sys.modules``."""

    def make(readings: Readings | None = None) -> Lab:
        bench = Bench()
        unit = Unit(bench, readings or Readings())
        package, module = fake_seabreeze({SERIAL: unit})
        monkeypatch.setitem(sys.modules, "seabreeze", package)
        monkeypatch.setitem(sys.modules, "seabreeze.spectrometers", module)
        return Lab(bench, unit, LightBox(bench))

    return make


def driver(lab: Lab, **kw: Any) -> SeabreezeSpectrometer:
    """The driver as ``_build_ocean`` makes it: opened by serial number, then connected."""
    spec = SeabreezeSpectrometer(open_seabreeze(SERIAL), lab.light, name="ocean1",
                                 excitation_nm=405.0, **kw)
    spec.connect()
    return spec


def frame(spec: SeabreezeSpectrometer, light: Light, integration_ms: float) -> FloatArray:
    """One frame in the executor's order (``procedure.frame``): time, light path, acquire."""
    spec.set_integration_ms(integration_ms)
    spec.configure(source=light[0], shutter_open=light[1], cell=light[2])
    return spec.acquire()


#: The procedure's frames in its order: blank (dark, lamp), PL dark, trace, sample, PL, dye, dark.
SEQUENCE: tuple[tuple[Light, float], ...] = (
    (OFF, ABS_MS), (("ABS", True, "SAMPLE"), ABS_MS), (OFF, PL_MS),
    (("EXC", True, "SAMPLE"), PL_MS), (("EXC", True, "SAMPLE"), PL_MS),
    (("ABS", True, "SAMPLE"), ABS_MS), (("EXC", True, "SAMPLE"), PL_MS),
    (("EXC", True, "DYE"), PL_MS), (OFF, PL_MS))


# ============================================================================= open, connect
def test_the_unit_is_found_by_its_serial_number_and_a_missing_one_is_named(
        lab_of: Callable[..., Lab]) -> None:
    lab = lab_of()
    spec = driver(lab)
    assert spec.ping() == f"ocean1: Ocean FLAME-S {SERIAL}"
    np.testing.assert_array_equal(spec.wavelengths_nm, lab.bench.wl)
    with pytest.raises(HardwareError, match="no Ocean Insight spectrometer FLMS99999 found"):
        open_seabreeze("FLMS99999")


def test_connect_leaves_the_detector_free_running(lab_of: Callable[..., Lab]) -> None:
    """A unit left in an external-trigger mode would wait for a trigger: mode 0 at connect."""
    lab = lab_of()
    driver(lab)
    assert lab.unit.trigger == 0


@pytest.mark.parametrize("has_coefficients", [True, False])
def test_a_nonlinearity_correction_the_unit_cannot_make_is_the_devices_file_s_error(
        lab_of: Callable[..., Lab], has_coefficients: bool) -> None:
    """``correct_nonlinearity`` raises ``SeaBreezeError`` if unsupported: the devices file names a
    correction the unit cannot make, so connect refuses it naming the field; without it, fine."""
    lab = lab_of(Readings(nonlinearity=has_coefficients))
    if has_coefficients:
        driver(lab)
    else:
        with pytest.raises(ConfigError, match="correct_nonlinearity: false"):
            driver(lab)
    spec = driver(lab, correct_nonlinearity=False)
    assert spec.acquire().shape == (PIXELS,)


# ============================================================================= FIFO, units
@pytest.mark.parametrize(("fifo", "stale_frames"), [(0, None), (1, None), (2, None), (1, 1),
                                                    (3, 3)])
def test_every_frame_is_exposed_with_its_own_time_and_light(
        lab_of: Callable[..., Lab], fifo: int, stale_frames: int | None) -> None:
    """The detector buffers ``fifo`` spectra exposed before the call (the manual: one, after an
    integration-time change): each frame returned must be one exposed after its integration
    time and its light path were set. The default discards two; a deeper buffer is the
    devices file's ``stale_frames``."""
    lab = lab_of(Readings(fifo=fifo))
    spec = driver(lab, **({} if stale_frames is None else {"stale_frames": stale_frames}))
    for light, ms in SEQUENCE:
        counts = frame(spec, light, ms)
        got = lab.unit.returned[-1]
        assert (got.integration_us, got.light) == (round(ms * 1000), light)
        np.testing.assert_array_equal(counts, lab.unit.correct(got.counts, False, True))
    assert not any("intensities(True" in c for c in lab.unit.calls)  # true darks, not pixels


def test_integration_times_go_to_the_unit_in_microseconds(lab_of: Callable[..., Lab]) -> None:
    lab = lab_of()
    spec = driver(lab)
    spec.set_integration_ms(20.0)
    assert lab.unit.integration_us == 20_000
    spec.set_integration_ms(0.0015 * 1000)  # 1.5 ms
    assert lab.unit.integration_us == 1_500
    with pytest.raises(HardwareError, match=r"integration_ms = 0.5 .*\[1, 10000\] ms"):
        spec.set_integration_ms(0.5)
    assert lab.unit.integration_us == 1_500  # refused before the unit was asked


@pytest.mark.parametrize("limits", ["method", "absent"])
def test_a_unit_without_the_limits_property_is_still_driven(lab_of: Callable[..., Lab],
                                                            limits: str) -> None:
    """Open: ``integration_time_micros_limits`` as a method, or missing (older seabreeze): a
    time in range is set; one out of range is still the unit's refusal as a HardwareError."""
    lab = lab_of(Readings(limits=limits))
    spec = driver(lab)
    spec.set_integration_ms(PL_MS)
    assert lab.unit.integration_us == 200_000
    with pytest.raises(HardwareError, match=r"0\.5 |integration_time_micros\(500\)"):
        spec.set_integration_ms(0.5)


# ============================================================================= saturation
SATURATION = {
    "16-bit": Readings(),
    "eeprom-max": Readings(max_intensity=62_000.0),
    "rescaled-15-bit": Readings(adc_full=30_000.0),
    "15-bit-not-rescaled": Readings(adc_full=32_767.0, rescaled=False),
    "correction-lowers": Readings(polynomial=0.1),
    "correction-raises": Readings(polynomial=-0.1),
}


def _features(lab: Lab, spec: SeabreezeSpectrometer) -> tuple[int, float]:
    """Run the procedure's frames and the analyzer: (quality flags, PL peak nm)."""
    frames = [frame(spec, light, ms) for light, ms in SEQUENCE]
    got = extract_features_batch(
        spec.wavelengths_nm, pl_counts=frames[6], dark_pl_counts=frames[2],
        dye_pl_counts=frames[7], sample_counts=frames[5], blank_counts=frames[1],
        dark_abs_counts=frames[0], excitation_nm=spec.excitation_nm,
        saturation_counts=spec.saturation_counts)
    return int(got.flags[0]), float(got.pl_peak_nm[0])


@pytest.mark.parametrize("reading", list(SATURATION))
@pytest.mark.parametrize("correct", [True, False])
def test_a_saturated_emission_frame_is_never_chemistry(lab_of: Callable[..., Lab],
                                                       reading: str, correct: bool) -> None:
    """A frame at the saturation level (``max_intensity``, 65535 or an EEPROM value, rescaled or
    not, corrected for nonlinearity or not) must block the features; the same optics dimmer
    must not (so the check is the saturation, not something else failing). A unit whose ADC
    saturates at 15 bits without rescaling never reaches the 65535 it states: its clipped peak
    is found by its flat top."""
    lab = lab_of(SATURATION[reading])
    spec = driver(lab, correct_nonlinearity=correct)
    flags, peak = _features(lab, spec)
    assert not flags & QualityFlag.blocking(), QualityFlag(flags).names()
    assert peak == pytest.approx(560.0, abs=1.0)
    lab.bench.emission = 5.0
    flags, _ = _features(lab, spec)
    assert flags & (QualityFlag.SATURATED | QualityFlag.INVALID_INPUT), QualityFlag(flags).names()


# ============================================================================= lost unit
LOSS_POINTS = ("set_integration", "configure", "acquire", "between_reads", "saturation", "ping")


@pytest.mark.parametrize("lost", [SeaBreezeError, USBError, RuntimeError],
                         ids=["seabreeze", "usb", "runtime"])
@pytest.mark.parametrize("point", LOSS_POINTS)
def test_a_unit_unplugged_anywhere_is_a_hardware_error_never_a_frame(
        lab_of: Callable[..., Lab], lost: type[Exception], point: str) -> None:
    """A pulled cable: the next call raises (which error is open). Whatever the call, the
    executor must get the driver's HardwareError (its safe-state path), never the library's own
    error (an unexplained crash) and never a frame."""
    lab = lab_of(Readings(lost=lost))
    spec = driver(lab)
    spec.saturation_counts  # noqa: B018 - read once while the unit is there
    steps: list[tuple[str, Callable[[], object]]] = [
        ("set_integration", lambda: spec.set_integration_ms(PL_MS)),
        ("configure", lambda: spec.configure(source="EXC", shutter_open=True, cell="SAMPLE")),
        ("acquire", spec.acquire), ("saturation", lambda: spec.saturation_counts),
        ("ping", spec.ping)]
    names = [name for name, _ in steps]
    at = names.index("acquire" if point == "between_reads" else point)
    for _, step in steps[:at]:
        step()
    if point == "between_reads":  # the first read gets through, the next finds it gone
        lab.unit.fail_reads = 0
        reads = lab.unit.read

        def unplug_after_one() -> Exposure:
            lab.unit.plugged = False
            return reads()
        lab.unit.read = unplug_after_one  # type: ignore[method-assign]
    else:
        lab.unit.plugged = False

    def the_rest() -> None:
        for _, step in steps[at:]:
            step()
    with pytest.raises(HardwareError) as err:
        the_rest()
    assert isinstance(err.value.__cause__, lost)  # the library's error, named and wrapped


def test_read_failures_are_hardware_errors_never_frames(lab_of: Callable[..., Lab]) -> None:
    """A transfer error, or a frame of the wrong length: a device failure naming the call."""
    lab = lab_of()
    spec = driver(lab)
    spec.set_integration_ms(PL_MS)
    lab.unit.fail_reads = 1
    with pytest.raises(HardwareError, match=r"ocean1: intensities\(.*SeaBreezeError"):
        spec.acquire()
    lab.unit.short_reads = 2
    with pytest.raises(HardwareError, match="256 pixels, expected 512"):
        spec.acquire()


# ============================================================================= darks
def test_a_dead_lamp_is_a_fault_against_the_dark_of_its_own_integration_time(
        lab_of: Callable[..., Lab]) -> None:
    """The dark D is taken at the sample's integration time: a lamp frame is judged against
    the dark of its own time only (a dark at another time says nothing about it)."""
    lab = lab_of()
    spec = driver(lab)
    lab.bench.lamp = 0.0
    frame(spec, OFF, PL_MS)
    frame(spec, ("ABS", True, "SAMPLE"), ABS_MS)  # no dark at 20 ms yet: not judged
    frame(spec, OFF, ABS_MS)
    with pytest.raises(DeviceFault, match="no light in the ABS frame"):
        frame(spec, ("ABS", True, "SAMPLE"), ABS_MS)
    lab.bench.lamp = 1.0
    frame(spec, ("ABS", True, "SAMPLE"), ABS_MS)


def _exposure_of(unit: Unit, counts: FloatArray) -> tuple[int, Light]:
    """The exposure a recorded frame is (its counts are unique: each exposure has its noise)."""
    hits = [e for e in unit.returned if np.array_equal(e.counts, counts)]
    assert len(hits) == 1
    return hits[0].integration_us, hits[0].light


@pytest.mark.parametrize("fifo", [0, 1, 2])
def test_the_procedure_pairs_each_frame_with_a_dark_of_its_own_integration_time(
        lab_of: Callable[..., Lab], fifo: int) -> None:
    """The absorbance procedure: dark D (lamp off or shuttered) at the sample's integration
    time, reference R (lamp through the solvent-filled cell), sample S; PL with its own dark at
    the emission time. One experiment of the real procedure (the simulated rig, its detector
    replaced by the driver over the fake): each frame of the record is the exposure it says."""
    lab = lab_of(Readings(fifo=fifo))
    ex = SimulatedExecutor(seed=3)
    ex.session.spectrometer = driver(lab)  # type: ignore[assignment]
    sp = ex.run(Conditions(t_core_c=180, tau_core_min=13, t_shell_c=280, tau_shell_min=15,
                           cl_to_i=6, s_to_zn=2)).spectra
    abs_us, pl_us = round(sp.abs_integration_ms * 1000), round(sp.pl_integration_ms * 1000)
    assert abs_us != pl_us
    got = {name: _exposure_of(lab.unit, getattr(sp, name)) for name in sp.ARRAYS[1:]}
    assert got == {"dark_abs_counts": (abs_us, OFF), "blank_counts": (abs_us, ("ABS", True,
                                                                                 "SAMPLE")),
                   "sample_counts": (abs_us, ("ABS", True, "SAMPLE")),
                   "dark_pl_counts": (pl_us, OFF), "pl_counts": (pl_us, ("EXC", True, "SAMPLE")),
                   "dye_pl_counts": (pl_us, ("EXC", True, "DYE"))}
    assert sp.saturation_counts == lab.unit.full


def test_the_devices_file_builds_the_same_driver(lab_of: Callable[..., Lab]) -> None:
    """Through the ``ocean`` kind: opened by serial number, the light path named."""
    lab = lab_of(Readings(fifo=2))
    spec_entry = OceanSpec(serial_number=SERIAL, light="optics_light", excitation_nm=405.0)

    class Ctx:
        time_scale = 1.0

        def device(self, name: str) -> object:
            assert name == "optics_light"
            return lab.light

    built = get_kind("ocean").build("spectrometer", spec_entry, Ctx())  # type: ignore[arg-type]
    assert isinstance(built, SeabreezeSpectrometer)
    built.connect()
    frame(built, ("ABS", True, "SAMPLE"), ABS_MS)
    assert lab.unit.returned[-1].light == ("ABS", True, "SAMPLE")
