"""Reactors of your own: a response model named by import path, benchmarked like a member.

The family's members are ours. A method developer, or a lab with its own surrogate of its own
reactor, wants every strategy run through the same campaign loop on *their* model, which this
code has never seen. A benchmark spec names it (``family.custom``)::

    family:
      kinds: []                       # only the custom reactors (default when custom is given)
      custom:
        - {response: "mylab.reactor:Response", seeds: [0, 1, 2], label: mylab}

The import target is either

* an object with a ``product(c)`` method (one reactor; every seed is the same reactor, so only
  one seed is accepted), or
* a callable (a class, a function) that takes the member seed and returns such an object (a
  family of your own).

``product(c)`` gets :class:`~autolab.twin.chemistry.ConditionArrays` (parallel arrays of every
condition, shape ``(n,)``, physical units) and returns ``(pl_peak_nm, fwhm_nm, qy)``, three
arrays of shape ``(n,)``: the *noise-free* product, vectorized. Optional attributes:
``corners`` (a :class:`~autolab.benchmarking.family.Corners`: where the reactor clogs; default:
it never clogs, and below a QY of 0.005 there is no emission) and ``stokes_ev`` (the gap between
the first-exciton absorption and the emission of rendered spectra, default 0.12 eV).

Around the response everything is the simulated rig's, as for our ``rff`` and ``additive``
members (:class:`~autolab.benchmarking.family.ResponseTwin`): the procedure, clock, heater ramps,
settling, condition jitter, rendered spectra read by the analyzer, failure draws. The reading is
noisy (the spec's ``twin.noise``), the success judged on the noise-free truth.

A :class:`CustomResponse` holds only the import path and seed, so a member pickles to pool and
Ray workers, which import the model themselves (it must be importable there: installed, or on
``PYTHONPATH``). Its fingerprint includes a hash of the model's source file, so a resumed
benchmark never reuses cells or yardsticks computed with an older version of the model.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolab.benchmarking.family import PL_LIMITS_NM, Corners, FloatArray, Member
from autolab.twin import TwinConfig
from autolab.twin.chemistry import ConditionArrays

#: Where a reactor of your own clogs when it does not say: nowhere.
NEVER_CLOGS = Corners(t_core_c=math.inf, tau_core_min=math.inf, s_to_zn=math.inf,
                      t_shell_c=math.inf)


class CustomResponseError(ValueError):
    """A response model of your own cannot be loaded or answers in the wrong shape."""


def _split_target(target: str) -> tuple[str, str]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise CustomResponseError(f"{target!r}: expected 'package.module:name' (an import path, "
                                  "a colon, then the object's name in that module)")
    return module, attr


def _import_target(target: str) -> Any:
    module_name, attr = _split_target(target)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise CustomResponseError(f"{target!r}: cannot import {module_name!r} ({err}); is it "
                                  "installed or on PYTHONPATH?") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CustomResponseError(f"{target!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


@functools.lru_cache(maxsize=256)
def load_response(target: str, seed: int) -> Any:
    """The response object of ``target`` for member ``seed`` (imported once per process).

    Raises:
        CustomResponseError: The target cannot be imported, or yields nothing with ``product``.
    """
    obj = _import_target(target)
    if hasattr(obj, "product") and not isinstance(obj, type):
        return obj
    if not callable(obj):
        raise CustomResponseError(f"{target!r}: expected an object with a product(c) method or "
                                  f"a callable taking the member seed, got {type(obj).__name__}")
    try:
        model = obj(seed)
    except Exception as err:  # a user's factory: any failure is its, named with the call
        raise CustomResponseError(f"{target!r}: calling it with the member seed {seed} "
                                  f"failed: {type(err).__name__}: {err}") from err
    if not hasattr(model, "product"):
        raise CustomResponseError(f"{target!r}({seed}) returned {type(model).__name__}, which "
                                  "has no product(c) method")
    return model


def is_single(target: str) -> bool:
    """Whether ``target`` is one reactor (an object) rather than a factory of many."""
    obj = _import_target(target)
    return hasattr(obj, "product") and not isinstance(obj, type)


@functools.lru_cache(maxsize=64)
def source_hash(target: str) -> str:
    """Hash of the source file of the target's module ('' where Python cannot find it)."""
    module = importlib.import_module(_split_target(target)[0])
    try:
        text = inspect.getsource(module)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _column(name: str, value: Any, n: int, target: str) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n,):
        raise CustomResponseError(f"{target!r}: product(c) returned {name} of shape {arr.shape} "
                                  f"for {n} condition sets; expected ({n},)")
    return arr


@dataclass(frozen=True)
class CustomResponse:
    """A member's response named by import path (the :class:`~.family.Response` protocol).

    Attributes:
        target: ``package.module:name`` of the object or factory.
        seed: The member seed handed to a factory.
    """

    target: str
    seed: int

    @property
    def model(self) -> Any:
        """The loaded response object."""
        return load_response(self.target, self.seed)

    @property
    def corners(self) -> Corners:
        """Where it clogs: the model's ``corners``, else nowhere."""
        corners = getattr(self.model, "corners", None)
        return corners if isinstance(corners, Corners) else NEVER_CLOGS

    @property
    def stokes_ev(self) -> float:
        """Emission-to-first-exciton gap of rendered spectra, eV (the model's, else 0.12)."""
        return float(getattr(self.model, "stokes_ev", 0.12))

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(pl_peak_nm, fwhm_nm, qy)`` per condition set, shapes checked."""
        try:
            out = self.model.product(c)
        except Exception as err:  # a user's model: any failure is its, named with the call
            raise CustomResponseError(f"{self.target!r} (seed {self.seed}): product(c) failed: "
                                      f"{type(err).__name__}: {err}") from err
        if not isinstance(out, tuple | list) or len(out) != 3:
            raise CustomResponseError(f"{self.target!r}: product(c) must return "
                                      "(pl_peak_nm, fwhm_nm, qy)")
        n = len(c)
        pl, fwhm, qy = (_column(k, v, n, self.target)
                        for k, v in zip(("pl_peak_nm", "fwhm_nm", "qy"), out, strict=True))
        return pl, fwhm, qy

    def identity(self) -> dict[str, str]:
        """What a fingerprint needs: the target and its module's source hash."""
        return {"response": self.target, "source": source_hash(self.target)}


def check_response(response: CustomResponse, c: ConditionArrays) -> None:
    """Probe a response at condition sets ``c`` (e.g. the box's corners and centre).

    Raises:
        CustomResponseError: Wrong shapes, a non-finite or out-of-window PL, a non-positive
            FWHM, or a QY outside [0, 1], naming the condition set.
    """
    pl, fwhm, qy = response.product(c)
    lo, hi = PL_LIMITS_NM
    checks = ((np.isfinite(pl) & (pl >= lo) & (pl <= hi), f"pl_peak_nm in [{lo:g}, {hi:g}] nm"),
              (np.isfinite(fwhm) & (fwhm > 0), "fwhm_nm > 0"),
              (np.isfinite(qy) & (qy >= 0) & (qy <= 1), "qy in [0, 1]"))
    for ok, expected in checks:
        if not ok.all():
            i = int(np.argmin(ok))
            raise CustomResponseError(
                f"{response.target!r} (seed {response.seed}) at {c.take(i)}: expected "
                f"{expected}; got pl {pl[i]:g}, fwhm {fwhm[i]:g}, qy {qy[i]:g}")


def default_label(target: str) -> str:
    """A member-name prefix from the target: its last name, made safe for file names."""
    name = _split_target(target)[1].rsplit(".", 1)[-1]
    safe = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in name).strip("._")
    return safe or "custom"


def custom_member(target: str, seed: int, base: TwinConfig, label: str = "") -> Member:
    """Member ``seed`` of a response of your own, on the rig ``base`` (noise, detector, reactor).

    Raises:
        CustomResponseError: The target cannot be loaded (see :func:`load_response`).
    """
    response = CustomResponse(target, seed)
    return Member(kind="custom", seed=seed, twin=base, response=response,
                  stokes_ev=response.stokes_ev, label=label or default_label(target))
