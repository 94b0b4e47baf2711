"""The simulated executor: the digital twin behind the Executor protocol.

A campaign cannot tell it from the hardware: it returns the same Measurement type.
"""

from __future__ import annotations

from typing import Any

from autolab.records import Conditions, Measurement, QYReference
from autolab.twin import DigitalTwin, GroundTruth, TwinConfig


class SimulatedExecutor:
    """Runs experiments on :class:`~autolab.twin.DigitalTwin` on a virtual clock.

    The noise-free truth of every run is kept apart from the measurement, in :attr:`truths`
    (run index -> :class:`GroundTruth`, failed runs included), for benchmarks and tests.

    Args:
        config: Twin configuration (default reactor of the seed paper).
        seed: Seed of all noise and failure draws; run *k* uses ``[seed, k]``.
        qy_reference: Reference dye reported with each measurement.
    """

    name = "twin"

    def __init__(self, config: TwinConfig | None = None, seed: int = 0,
                 qy_reference: QYReference | None = None) -> None:
        self.twin = DigitalTwin(config or TwinConfig(), seed=seed, qy_reference=qy_reference)
        self.truths: dict[int, GroundTruth] = {}
        self._closed = False

    @property
    def lab_clock_h(self) -> float:
        """Virtual lab time since the executor started, h."""
        return self.twin.lab_clock_h

    @property
    def reagent_ml(self) -> dict[str, float]:
        """Cumulative reagent volumes, mL by reagent."""
        return self.twin.reagent_ml

    @property
    def last_shutdown(self) -> None:
        """Always None: the twin has no device to shut down (kept for the Executor protocol)."""
        return None

    def run(self, conditions: Conditions) -> Measurement:
        """Run one experiment to steady state and take the spectra.

        Raises:
            ConditionsError: Conditions outside the simulated reactor's envelope.
            ExperimentFailed: Clogging, gas bubbles or no emission (clock and reagents advanced).
        """
        index = self.twin.run_index
        try:
            meas, truth = self.twin.run(conditions)
        except Exception:
            if self.twin.run_index > index:  # the run happened (and failed): keep its truth
                self.truths[index] = self.twin.truth(conditions)
            raise
        self.truths[index] = truth
        return meas

    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible state (run counter, clock, reagent totals, tank contents)."""
        return {"executor": self.name, "twin": self.twin.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.twin.load_state_dict(state["twin"])

    def safe_state(self) -> None:
        """Flush and cool the simulated cascade (idempotent)."""
        self.twin.safe_state()

    def close(self) -> None:
        """Go to the safe state; further calls do nothing."""
        if not self._closed:
            self.safe_state()
            self._closed = True
