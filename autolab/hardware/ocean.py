"""Ocean Insight spectrometers through python-seabreeze (optional extra ``ocean``).

An Ocean detector only measures: the lamp, the excitation LED, the shutter and the sample/dye cell
selector of an inline optics set-up are other hardware. :class:`SeabreezeSpectrometer` therefore
takes the detector from seabreeze and the light path from any :class:`LightPath` (for instance the
light part of the ASP-1 optics head, or a GPIO box), and together they satisfy the
:class:`~autolab.hardware.base.Spectrometer` capability the executor uses, so a rig can swap its
optics without touching the executor.

seabreeze facts used: ``Spectrometer.from_serial_number(sn)``, ``integration_time_micros(us)``,
``wavelengths()``, ``intensities(correct_dark_counts, correct_nonlinearity)``,
``max_intensity``, ``integration_time_micros_limits``, ``trigger_mode(mode)`` (0: normal, the
detector free-runs; set at connect, since a detector left in an external-trigger mode by another
program waits for a trigger that never comes). The detector free-runs and buffers: the
spectrum a call returns was exposed before the call (luxpy's Ocean Optics notes, for an
integration-time change). So :meth:`SeabreezeSpectrometer.acquire` reads ``stale_frames``
spectra (two by default: the notes say one, a detector may buffer two) and discards them before
the one it returns, *after* the light path was set: the discard used to come with the
integration time, before the light path changed, so a frame could hold the light of the previous
setting (a "dark" with the lamp in it, a lamp frame exposed dark). Every seabreeze call and
property read is a USB exchange that an unplugged detector fails with its library's own error:
each becomes a :class:`HardwareError` naming it. With ``correct_nonlinearity`` a saturated pixel
leaves seabreeze moved by the polynomial, so saturation is judged on a raw frame
(:meth:`SeabreezeSpectrometer.acquire`).

A light path that can say how it is (:class:`~autolab.hardware.base.Watched`, e.g. an
``asp1_light``) is read back after every frame. One that cannot (a GPIO box) leaves the frame itself
as the only evidence, and the absorbance method says what it can prove (the dark D is taken with the
lamp off or shuttered at the same integration time; A = -log10((S - D)/(R - D))): a frame of the
lamp (``ABS``, shutter open) and a frame of the reference dye under excitation (``EXC``, ``DYE``)
must rise above the dark frame of the same integration time (:func:`light_shortfall`); the dye
always emits, and a lamp frame is bright wherever the sample does not absorb. A frame of the sample
under excitation is not judged: a sample that does not emit is chemistry.

Devices-file kind ``ocean`` (registered here; see docs/hardware.md): the detector is found by
its USB serial number, not a serial port, and ``light`` names the device that switches the light
path (for instance an ``asp1_light``)::

    spectrometer: {kind: ocean, serial_number: FLMS12345, light: optics_light,
                   excitation_nm: 405, path_length_cm: 0.1}
    optics_light: {kind: asp1_light, port: optics}
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from autolab.exceptions import ConfigError, DeviceFault, HardwareError
from autolab.hardware.base import Device, Watched, check_light_after_frame
from autolab.hardware.devices import DevicesConfig, DeviceSpecBase
from autolab.hardware.registry import BuildContext, Category, DeviceKind, register_kind

#: A lit frame must rise this many dark-noise sigmas above the dark frame (at its
#: :data:`LIGHT_PERCENTILE` pixel): a frame with no light reaches about 3.3 there.
LIGHT_MIN_SIGMAS = 10.0
#: Percentile of the pixels' excess over the dark frame that is judged (the dye's band covers
#: several % of the pixels, a lamp most of them).
LIGHT_PERCENTILE = 99.0


#: What else a lit frame without light can mean, by (source, cell). The sample's lamp frame is
#: the lamp through the product: one that passes no light at any wavelength the detector sees
#: (a deposit or a clog in the flow cell; an InP/ZnS product transmits red of its exciton)
#: cannot be told from a dead lamp by the frame, and the lab must look at the cell too.
_OPAQUE = {("ABS", "SAMPLE"): ", or the sample cell passes no light at any wavelength (a "
                              "deposit or a clog in the flow cell)"}


def dark_noise(dark: NDArray[np.float64], previous: NDArray[np.float64] | None = None) -> float:
    """One frame's read noise in counts, from dark frames of one integration time (pure).

    What ``frame - dark`` scatters by is the read noise: a linear CCD's fixed pattern (odd and
    even pixels read through two output amplifiers with different offsets, each pixel's own
    dark signal) is the same in both frames and cancels. So the noise is a robust MAD of the
    difference of two darks when there are two; of one dark, of the differences between
    pixels two apart (same parity, so the odd/even offset cancels; what is left of the
    pixel-to-pixel pattern raises the estimate and with it the threshold, the safe side for a
    check that must not fault on light). Floored at 1 count.

    Args:
        dark: The latest dark frame ``(P,)``.
        previous: An earlier dark frame of the same integration time, if any.
    """
    d = np.asarray(dark, dtype=np.float64)
    diff = d - previous if previous is not None else d[2:] - d[:-2]
    mad = float(np.median(np.abs(diff - np.median(diff)))) if diff.size else 0.0
    return max(1.4826 * mad / math.sqrt(2.0), 1.0)


def light_shortfall(frame: NDArray[np.float64], dark: NDArray[np.float64],
                    noise: float | None = None) -> str:
    """Why ``frame`` shows no light above ``dark`` (same integration time), or ``""`` (pure).

    A frame whose :data:`LIGHT_PERCENTILE` th-percentile excess over the dark is below
    :data:`LIGHT_MIN_SIGMAS` read-noise sigmas holds no light.

    Args:
        frame: The lit frame ``(P,)``.
        dark: The dark frame of its integration time ``(P,)``.
        noise: The read noise in counts; :func:`dark_noise` of ``dark`` alone if ``None``.
    """
    sigma = dark_noise(dark) if noise is None else noise
    excess = float(np.percentile(np.asarray(frame, dtype=np.float64) - dark, LIGHT_PERCENTILE))
    if excess >= LIGHT_MIN_SIGMAS * sigma:
        return ""
    return (f"its brightest {100 - LIGHT_PERCENTILE:g} % of pixels are {excess:.0f} counts above "
            f"the dark frame, whose noise is {sigma:.1f} counts (at least "
            f"{LIGHT_MIN_SIGMAS * sigma:.0f} expected)")


#: seabreeze trigger mode 0, "normal": the detector free-runs (python-seabreeze ``trigger_mode``).
NORMAL_TRIGGER = 0


@runtime_checkable
class LightPath(Protocol):
    """Light source (``ABS``/``EXC``/``OFF``), shutter and cell (``SAMPLE``/``DYE``) control."""

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Set and verify the light path."""
        ...


def open_seabreeze(serial_number: str | None = None) -> Any:
    """The seabreeze device with this serial number (the first one found if None).

    Raises:
        ConfigError: seabreeze is not installed (``pip install autolab[ocean]``).
        HardwareError: No such spectrometer is connected.
    """
    try:
        from seabreeze.spectrometers import Spectrometer  # noqa: PLC0415 (optional extra)
    except ImportError as err:
        raise ConfigError("an Ocean Insight spectrometer needs python-seabreeze: "
                          "pip install 'autolab[ocean]'") from err
    try:
        if serial_number is None:
            return Spectrometer.from_first_available()
        return Spectrometer.from_serial_number(serial_number)
    except Exception as err:  # seabreeze raises its own SeaBreezeError family
        raise HardwareError(f"no Ocean Insight spectrometer {serial_number or '(any)'} "
                            f"found: {err}") from err


class SeabreezeSpectrometer:
    """An Ocean Insight detector plus a light path, as one inline spectrometer.

    Args:
        device: A seabreeze ``Spectrometer`` (see :func:`open_seabreeze`).
        light_path: What switches lamp, LED, shutter and cell.
        name: Device name (logs, errors).
        excitation_nm: Wavelength of the excitation LED, nm.
        path_length_cm: Flow-cell path length, cm.
        correct_nonlinearity: Apply the detector's stored nonlinearity correction.
        stale_frames: Spectra read and discarded before each frame: at least as many as the
            detector's FIFO holds. The manual's notes say one; two (the default) also covers a
            detector that buffers two, for one more integration time per frame (about 6 s in
            a 30-60 min experiment), since a stale frame of the previous light is a dark with
            the lamp in it, or a lamp frame exposed dark.
    """

    def __init__(self, device: Any, light_path: LightPath, *, name: str = "spectrometer",
                 excitation_nm: float, path_length_cm: float = 0.1,
                 correct_nonlinearity: bool = True, stale_frames: int = 2) -> None:
        if not (math.isfinite(excitation_nm) and 200 <= excitation_nm <= 1100):
            raise ConfigError(f"{name}: excitation_nm = {excitation_nm}: expected 200-1100 nm")
        if not path_length_cm > 0:
            raise ConfigError(f"{name}: path_length_cm = {path_length_cm}: expected > 0")
        if stale_frames < 1:
            raise ConfigError(f"{name}: stale_frames = {stale_frames}: expected >= 1")
        self.device = device
        self.light_path = light_path
        self.name = name
        self._exc = float(excitation_nm)
        self._path = float(path_length_cm)
        self._nonlinearity = correct_nonlinearity
        self._stale = stale_frames
        self._wl = np.asarray(self._call("wavelengths"), dtype=np.float64)
        #: ``max_intensity`` and the integration limits (µs; None: the library has none),
        #: read once: a detector's EEPROM constants, and a read of them after the detector
        #: was lost must not be the first sign of it.
        self._full: float | None = None
        self._limits_us: tuple[float, float] | Literal["unread"] | None = "unread"
        self._integration_ms = math.nan
        #: The light path as last set (source, shutter open, cell); None while unknown.
        self._light: tuple[str, bool, str] | None = None
        #: Last dark frame (source off or shutter closed) and the read noise (:func:`dark_noise`)
        #: by integration time, µs.
        self._darks: dict[int, tuple[NDArray[np.float64], float]] = {}

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a seabreeze method; its own errors become a HardwareError naming the call.

        seabreeze raises its own ``SeaBreezeError`` family (a pulled cable, a correction the
        detector has no coefficients for), which is no :class:`HardwareError`: uncaught, a
        detector failing mid-run would reach the campaign as an unexplained crash instead of
        a device failure that puts the rig in its safe state.
        """
        shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        try:
            return getattr(self.device, method)(*args, **kwargs)
        except Exception as err:  # seabreeze (and pyusb) raise their own families
            raise HardwareError(f"{self.name}: {method}({shown}) failed: "
                                f"{type(err).__name__}: {err}") from err

    def _get(self, attribute: str) -> Any:
        """Read a seabreeze property; its errors become a HardwareError, as :meth:`_call`'s.

        A property (``max_intensity``, ``model``) is a USB exchange like a method: a detector
        unplugged raises there too (seabreeze's or pyusb's own error), which uncaught reached
        the executor as an unexplained crash, not a device failure.
        """
        try:
            return getattr(self.device, attribute)
        except Exception as err:  # seabreeze (and pyusb) raise their own families
            raise HardwareError(f"{self.name}: {attribute} failed: {type(err).__name__}: "
                                f"{err}") from err

    def _integration_limits_us(self) -> tuple[float, float] | None:
        """The detector's integration-time limits, µs, or None where seabreeze has none.

        python-seabreeze documents ``integration_time_micros_limits`` as a property; a version
        without it (or with a method of that name) still takes ``integration_time_micros``,
        which refuses a time out of range itself (a ``SeaBreezeError``, named by :meth:`_call`).
        """
        if self._limits_us == "unread":
            try:
                limits = self._get("integration_time_micros_limits")
            except HardwareError as err:
                if isinstance(err.__cause__, AttributeError):
                    self._limits_us = None
                    return None
                raise
            if callable(limits):
                limits = self._call("integration_time_micros_limits")
            lo_us, hi_us = limits
            self._limits_us = (float(lo_us), float(hi_us))
        return self._limits_us

    def connect(self) -> None:
        """Set the normal trigger mode, then take one frame with the corrections asked for.

        The trigger mode is the detector's own state and outlives a program: one left in an
        external-trigger mode (another program, a synchronised set-up) holds every
        ``intensities`` call until a trigger arrives, and the discard-one-frame rule of
        :meth:`acquire` assumes a free-running detector. Mode 0 is normal on Ocean detectors.

        python-seabreeze's documentation: ``correct_nonlinearity`` raises a ``SeaBreezeError`` on a
        detector without stored coefficients. Found at the first frame of a campaign, that is a
        device failure and the rig goes to its safe state; found here, it is the devices file that
        is wrong, and the error says which field to change. Only a corrected frame that fails again
        after an uncorrected one came says so: one failure may be a transfer error.

        Raises:
            ConfigError: The detector has no nonlinearity coefficients but the devices file
                asks for the correction.
            HardwareError: The detector does not deliver a frame at all.
        """

        def frame(correct: bool) -> None:
            self._call("intensities", correct_dark_counts=False, correct_nonlinearity=correct)

        self._call("trigger_mode", NORMAL_TRIGGER)
        self._full = float(self._get("max_intensity"))
        self._integration_limits_us()
        try:
            frame(self._nonlinearity)
        except HardwareError:
            if not self._nonlinearity:
                raise
            frame(False)  # the detector delivers frames at all
            try:  # a transfer error is not missing coefficients: the correction, once more
                frame(True)
            except HardwareError as err:
                raise self._no_coefficients(err) from err

    def _no_coefficients(self, err: HardwareError) -> ConfigError:
        """The devices file asks for a correction the detector cannot make (see :meth:`connect`)."""
        return ConfigError(f"devices.{self.name}.correct_nonlinearity=true, but the detector "
                           f"{self._get('serial_number')} cannot correct its nonlinearity "
                           f"(no stored coefficients?): {err}; set correct_nonlinearity: "
                           f"false")

    def ping(self) -> str:
        """Model and serial number."""
        return f"{self.name}: Ocean {self._get('model')} {self._get('serial_number')}"

    @property
    def wavelengths_nm(self) -> NDArray[np.float64]:
        """Pixel wavelengths, nm."""
        return self._wl

    @property
    def saturation_counts(self) -> float:
        """Full-scale counts of the detector (``max_intensity``, read at connect)."""
        if self._full is None:
            self._full = float(self._get("max_intensity"))
        return self._full

    @property
    def excitation_nm(self) -> float:
        """Excitation wavelength, nm."""
        return self._exc

    @property
    def path_length_cm(self) -> float:
        """Flow-cell path length, cm."""
        return self._path

    def set_integration_ms(self, integration_ms: float) -> None:
        """Set the integration time (:meth:`acquire` discards the frame exposed before).

        Raises:
            HardwareError: Outside the detector's limits (the message names them), or the
                detector failed (seabreeze's error, naming the call).
        """
        limits = self._integration_limits_us()
        us = round(integration_ms * 1000.0)
        if limits is not None and not limits[0] <= us <= limits[1]:
            lo_us, hi_us = limits
            raise HardwareError(f"{self.name}: integration_ms = {integration_ms:g} is outside the "
                                f"detector's range [{lo_us / 1000:g}, {hi_us / 1000:g}] ms")
        self._integration_ms = math.nan
        self._call("integration_time_micros", us)
        self._integration_ms = us / 1000.0

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Delegate lamp, LED, shutter and cell to the light path."""
        self._light = None
        self.light_path.configure(source=source, shutter_open=shutter_open, cell=cell)
        self._light = (source, shutter_open, cell)

    def acquire(self) -> NDArray[np.float64]:
        """One frame of raw counts ``(P,)`` (no dark correction: the executor takes darks).

        The spectra waiting in the detector's FIFO were exposed before this call (before the
        light path or the integration time was set, or before a wait), so ``stale_frames`` are
        read and discarded first (one integration time each).

        With the nonlinearity correction, a saturated pixel leaves seabreeze at the corrected
        value of full scale, above or below ``max_intensity`` as the EEPROM polynomial has it:
        below, the analyzer would take a saturated peak for chemistry. So a raw frame is read
        first, and the pixels at full scale there are at full scale in the frame returned
        (the next exposure, of the same light: one more integration time).

        Raises:
            HardwareError: The detector failed (seabreeze's error, naming the call), or the
                frame has the wrong number of pixels or a non-finite count.
            DeviceFault: A light path that can say how it is (:class:`Watched`) is not as set
                after the frame (a source that went out: the frame is dark); for one that
                cannot, a lamp or dye frame with no light above the dark frame
                (:func:`light_shortfall`).
        """
        for _ in range(self._stale):
            self._read(correct=False)  # the FIFO's stale spectra
        raw = self._read(correct=False) if self._nonlinearity else None
        counts = self._read(correct=self._nonlinearity)
        if raw is not None:
            full = self.saturation_counts
            counts = np.where(raw >= full - 0.5, full, counts)
        if isinstance(self.light_path, Watched):  # one that can say how it is (asp1_light)
            check_light_after_frame(self.name, self.light_path.check())
        else:
            self._check_light_level(counts)
        return counts

    def _read(self, *, correct: bool) -> NDArray[np.float64]:
        """One spectrum from the detector, checked for its length and finite counts.

        Raises:
            HardwareError: seabreeze's error (naming the call), a frame with the wrong number
                of pixels or a non-finite count.
        """
        counts = np.asarray(self._call("intensities", correct_dark_counts=False,
                                       correct_nonlinearity=correct), dtype=np.float64)
        if counts.shape != self._wl.shape:
            raise HardwareError(f"{self.name}: frame has {counts.size} pixels, expected "
                                f"{self._wl.size}")
        bad = np.flatnonzero(~np.isfinite(counts))
        if bad.size:
            raise HardwareError(f"{self.name}: frame has {bad.size} non-finite count"
                                f"{'s' if bad.size > 1 else ''} (pixel {int(bad[0])}"
                                f"{' ...' if bad.size > 1 else ''}): a readout fault, not a "
                                f"spectrum")
        return counts

    def _check_light_level(self, counts: NDArray[np.float64]) -> None:
        """Keep dark frames; a lamp or dye frame must show light above the dark (see module).

        Raises:
            DeviceFault: A lamp frame or a dye frame under excitation holds no light.
        """
        if self._light is None or not math.isfinite(self._integration_ms):
            return
        source, shutter_open, cell = self._light
        us = round(self._integration_ms * 1000.0)
        if source == "OFF" or not shutter_open:
            previous = self._darks.get(us)
            self._darks[us] = (counts, dark_noise(counts, None if previous is None
                                                  else previous[0]))
            return
        dark = self._darks.get(us)
        judged = source == "ABS" or (source == "EXC" and cell == "DYE")
        if dark is None or not judged:
            return
        if why := light_shortfall(counts, *dark):
            raise DeviceFault(self.name, f"no light in the {source} frame of the {cell} cell: "
                              f"{why}: the lamp, LED or shutter failed and the light path "
                              f"cannot say so{_OPAQUE.get((source, cell), '')}; experiment "
                              f"invalid")


class OceanSpec(DeviceSpecBase):
    """Devices-file entry of an Ocean Insight spectrometer (kind ``ocean``).

    Attributes:
        serial_number: The detector's USB serial number (``FLMS12345``): seabreeze finds it
            by this, so it needs no serial port.
        light: Name of the device (capability ``light``) that switches lamp, LED, shutter and
            cell.
        excitation_nm: Wavelength of the excitation LED, nm.
        path_length_cm: Flow-cell path length, cm.
        correct_nonlinearity: Apply the detector's stored nonlinearity correction.
        stale_frames: Spectra discarded before each frame, at least as many as the
            detector's FIFO holds (the manual's notes: one; default two, see
            :class:`SeabreezeSpectrometer`).
    """

    kind: Literal["ocean"] = "ocean"
    serial_number: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    light: str = Field(min_length=1)
    excitation_nm: float = Field(ge=200, le=1100)
    path_length_cm: float = Field(default=0.1, gt=0, le=10)
    correct_nonlinearity: bool = True
    stale_frames: int = Field(default=2, ge=1, le=8)

    def connection(self, config: DevicesConfig) -> str:
        """The USB serial number."""
        return f"USB {self.serial_number}"

    def references(self) -> tuple[tuple[str, str, Category], ...]:
        """The light path it drives."""
        return (("light", self.light, "light"),)


def _build_ocean(name: str, spec: OceanSpec, ctx: BuildContext) -> Device:
    light = ctx.device(spec.light)
    if not isinstance(light, LightPath):
        raise ConfigError(f"devices.{name}.light={spec.light!r}: {type(light).__name__} cannot "
                          f"switch a light path (no configure(source, shutter_open, cell))")
    return SeabreezeSpectrometer(open_seabreeze(spec.serial_number), light, name=name,
                                 excitation_nm=spec.excitation_nm,
                                 path_length_cm=spec.path_length_cm,
                                 correct_nonlinearity=spec.correct_nonlinearity,
                                 stale_frames=spec.stale_frames)


register_kind(DeviceKind("ocean", "spectrometer", OceanSpec, _build_ocean, None,
                         "Ocean Insight spectrometer over USB (python-seabreeze), with a "
                         "separate light path"))
