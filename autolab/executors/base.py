"""The executor protocol shared by the digital twin and the hardware.

An executor runs one experiment at a time. The twin and the hardware return the same
:class:`~autolab.records.Measurement`, so nothing downstream can tell them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autolab.records import Conditions, Measurement

if TYPE_CHECKING:
    from autolab.hardware.safety import ShutdownReport


@runtime_checkable
class Executor(Protocol):
    """Runs experiments; owns the reactor (real or simulated) and its lab clock."""

    name: str

    @property
    def lab_clock_h(self) -> float:
        """Lab time elapsed since the executor started, h (virtual for the twin)."""
        ...

    @property
    def reagent_ml(self) -> dict[str, float]:
        """Cumulative reagent volumes consumed since the executor started, mL by reagent."""
        ...

    @property
    def last_shutdown(self) -> ShutdownReport | None:
        """Every step of the last shutdown and whether the device confirmed it.

        None where there is nothing to shut down (the twin) or before a shutdown ran. A failed
        step names the device left unsafe and what a person must do.
        """
        ...

    def run(self, conditions: Conditions) -> Measurement:
        """Run one experiment to steady state and take the spectra.

        Raises:
            ExperimentFailed: The experiment ran but gave no usable product (clogging, ...).
            DeviceFault: A device did not do what was commanded (a pump misdelivered): the
                result says nothing about chemistry; the executor can go on.
            SafetyTrip: An interlock tripped; the shutdown ran (its report in
                ``.shutdown``).
            HardwareError: A device failed; the executor is already in its safe state.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible state to journal after each experiment.

        Lab clock, reagent totals, what is in the tanks, run counter: what a resumed campaign
        needs to continue exactly where the journal ends.
        """
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (on ``autolab resume``)."""
        ...

    def safe_state(self) -> None:
        """Put the reactor into its safe state (stop reagents, flush, cool). Idempotent."""
        ...

    def close(self) -> None:
        """Release resources; calls :meth:`safe_state` first."""
        ...
