r"""ASP-1: the serial protocol of the autolab inline spectrometer head (pure encode/parse).

The inline optics are one module on one serial line: a CCD spectrometer, a light source
(tungsten-halogen lamp for absorbance, 405 nm LED for excitation), a shutter, and a two-position
cell holder (the product flow cell, or the sealed reference-dye cell for the relative QY). Ocean
Insight units talk USB (a seabreeze backend is not written yet); ASP-1 is the
documented protocol of the serial head the virtual lab emulates, modelled on SCPI:

* 115200 Bd 8N1; ASCII commands ending in ``\\n``; each answered by one line: ``OK``,
  ``ERR <text>``, or the queried value.
* ``*IDN?`` -> ``AUTOLAB,ASP-1,<serial>,<firmware>``; ``PIX?`` -> pixel count;
  ``WL?`` -> wavelength polynomial ``c0 c1 c2 c3`` (λ = Σ cᵢ·pixelⁱ, nm, Ocean-style);
  ``SAT?`` -> full-scale counts; ``EXC?`` -> excitation wavelength, nm; ``PATH?`` -> flow-cell
  path length, cm.
* ``INT <ms>`` / ``INT?`` integration time, ms (1-10000); ``SRC ABS|EXC|OFF`` / ``SRC?``;
  ``SHUT OPEN|CLOSE`` / ``SHUT?``; ``CELL SAMPLE|DYE`` / ``CELL?``. ``SRC?`` answers the
  source that is lit: a failed lamp or LED reads ``OFF`` (how the supervisor finds it).
* ``ACQ`` -> one binary frame: ``#`` + 5 ASCII digits (pixel count n) + n big-endian uint16
  counts + CRC-16/XMODEM of the counts (2 bytes, big-endian). A frame after an ``INT`` change
  is integrated entirely at the new time (no FIFO gotcha, unlike free-running USB units).
"""

from __future__ import annotations

import binascii
import re
import struct

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.transport import DeviceRefused

EOL = b"\n"
SOURCES = ("ABS", "EXC", "OFF")
SHUTTER = ("OPEN", "CLOSE")
CELLS = ("SAMPLE", "DYE")
INT_RANGE_MS = (1.0, 10_000.0)


class SpectroProtocolError(HardwareError):
    """A spectrometer reply did not parse (bad frame, CRC, or an ``ERR`` answer)."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        self.partial = partial
        super().__init__(message)


def encode(command: str, arg: str | float | None = None) -> bytes:
    r"""``COMMAND[ arg]\\n``.

    Raises:
        ConfigError: Malformed command text.
    """
    if not re.fullmatch(r"\*?[A-Z]+\??", command):
        raise ConfigError(f"spectrometer command: expected e.g. 'INT' or 'INT?', got {command!r}")
    text = command if arg is None else f"{command} {arg:g}" if isinstance(arg, float | int) \
        else f"{command} {arg}"
    return text.encode("ascii") + EOL


def parse_line(frame: bytes) -> str:
    """Text of a one-line reply.

    Raises:
        DeviceRefused: ``ERR ...`` (the head refusing: never retried).
        SpectroProtocolError: Not ASCII.
    """
    try:
        text = frame.decode("ascii").strip()
    except UnicodeDecodeError as err:
        raise SpectroProtocolError(f"spectrometer reply {frame!r}: not ASCII", frame) from err
    if text.startswith("ERR"):
        raise DeviceRefused(f"spectrometer refused: {text}")
    return text


def check_ok(frame: bytes) -> None:
    """Raise unless the reply is ``OK``."""
    text = parse_line(frame)
    if text != "OK":
        raise SpectroProtocolError(f"spectrometer reply {frame!r}: expected OK", frame)


def encode_frame(counts: NDArray[np.float64]) -> bytes:
    """Binary frame of an ``ACQ`` (emulator side): clipped to 0-65535 and rounded."""
    data = np.clip(np.round(np.asarray(counts, dtype=np.float64)), 0, 65535).astype(">u2")
    raw = data.tobytes()
    return b"#" + f"{len(data):05d}".encode("ascii") + raw + struct.pack(
        ">H", binascii.crc_hqx(raw, 0))


def frame_length(header: bytes) -> int:
    """Total frame length from its 6-byte header ``#nnnnn``.

    Raises:
        SpectroProtocolError: Not a frame header.
    """
    if len(header) != 6 or header[:1] != b"#" or not header[1:].isdigit():
        raise SpectroProtocolError(f"spectrum frame header {header!r}: expected '#nnnnn'",
                                   header)
    return 6 + 2 * int(header[1:]) + 2


def decode_frame(frame: bytes) -> NDArray[np.float64]:
    """Counts of an ``ACQ`` frame, float64 ``(n,)``.

    Raises:
        SpectroProtocolError: Wrong length or CRC.
    """
    n_total = frame_length(frame[:6])
    if len(frame) != n_total:
        raise SpectroProtocolError(f"spectrum frame: {len(frame)} bytes, header says {n_total}",
                                   frame[:16])
    raw = frame[6:-2]
    (crc,) = struct.unpack(">H", frame[-2:])
    if binascii.crc_hqx(raw, 0) != crc:
        raise SpectroProtocolError("spectrum frame: CRC mismatch", frame[:16])
    return np.frombuffer(raw, dtype=">u2").astype(np.float64)


def wavelengths(coefficients: list[float], n_pixels: int) -> NDArray[np.float64]:
    """Pixel wavelengths from the calibration polynomial, nm."""
    px = np.arange(n_pixels, dtype=np.float64)
    return np.asarray(sum(c * px**i for i, c in enumerate(coefficients)), dtype=np.float64)


def parse_floats(frame: bytes) -> list[float]:
    """A space-separated list of numbers (``WL?``).

    Raises:
        SpectroProtocolError: Not numbers.
    """
    try:
        return [float(x) for x in parse_line(frame).split()]
    except ValueError as err:
        raise SpectroProtocolError(f"spectrometer reply {frame!r}: expected numbers",
                                   frame) from err
