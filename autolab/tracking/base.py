"""The tracker protocol, a tracker that keeps nothing, and helpers shared by trackers.

A tracker is where people *look at* a campaign (the MLflow UI); the journal is where the campaign
*lives*. So a tracker may fail (server down) without stopping the campaign: every tracker method
raises :class:`~autolab.exceptions.TrackingError` on failure, the campaign notes it and carries
on, and :func:`autolab.tracking.sync.sync` later replays what the journal holds but the tracker
does not.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from autolab.records import Trial

#: A model-fit point: (predicted mean, predicted standard deviation, measured value).
Prediction = tuple[float, float, float]


@runtime_checkable
class Tracker(Protocol):
    """Records a campaign for people to review. Implementations: MLflow, null.

    Attributes:
        keeps_records: ``False`` if the tracker discards what it gets (so the journal must not
            mark trials as tracked by it).
    """

    keeps_records: bool

    @property
    def run_id(self) -> str | None:
        """Id of the campaign run this tracker writes to, ``None`` before start/resume."""
        ...

    @property
    def tracking_uri(self) -> str | None:
        """Where the runs are stored, for the journal's ``tracker_run`` record."""
        ...

    def start_campaign(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str],
                       params: Mapping[str, Any], *, campaign_id: str | None = None) -> str:
        """Open the campaign's run (or find it again by ``campaign_id``); return its id."""
        ...

    def resume_campaign(self, run_id: str) -> None:
        """Attach to an existing campaign run, e.g. after ``autolab resume``."""
        ...

    def log_trial(self, trial: Trial, best_so_far: float | None, lab_clock_h: float,
                  extra_metrics: Mapping[str, float]) -> bool:
        """Record one finished experiment, at most once per campaign.

        Returns:
            ``True`` if it was recorded now, ``False`` if the tracker already held it.
        """
        ...

    def log_campaign_artifacts(self, trials: Sequence[Trial],
                               predictions: Sequence[Prediction] | None = None,
                               lab_clock_h: Sequence[float] | None = None) -> None:
        """Refresh campaign-level plots and the summary table from all trials so far.

        Args:
            trials: Every finished trial of the campaign.
            predictions: Optional model-fit points from the optimizer.
            lab_clock_h: Lab clock when each trial finished (default: from the measurements).
        """
        ...

    def end_campaign(self, status: str, reason: str | None = None) -> None:
        """Close the campaign run (``completed``, ``failed``, ``interrupted``)."""
        ...


class NullTracker:
    """A tracker that records nothing, for campaigns run without MLflow (CI, benchmarks).

    It still hands out a run id so callers need no special case, but ``keeps_records`` is
    ``False`` so a later sync to a real tracker logs everything.
    """

    keeps_records = False

    def __init__(self) -> None:
        self._run_id: str | None = None

    @property
    def run_id(self) -> str | None:
        """``"null"`` once a campaign was started or resumed."""
        return self._run_id

    @property
    def tracking_uri(self) -> str | None:
        """Always ``None``: nothing is stored anywhere."""
        return None

    def start_campaign(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str],
                       params: Mapping[str, Any], *, campaign_id: str | None = None) -> str:
        """Pretend to open a run."""
        self._run_id = "null"
        return self._run_id

    def resume_campaign(self, run_id: str) -> None:
        """Pretend to attach to a run."""
        self._run_id = run_id

    def log_trial(self, trial: Trial, best_so_far: float | None, lab_clock_h: float,
                  extra_metrics: Mapping[str, float]) -> bool:
        """Discard the trial; ``False`` since nothing was recorded."""
        return False

    def log_campaign_artifacts(self, trials: Sequence[Trial],
                               predictions: Sequence[Prediction] | None = None,
                               lab_clock_h: Sequence[float] | None = None) -> None:
        """Discard."""

    def end_campaign(self, status: str, reason: str | None = None) -> None:
        """Forget the run."""
        self._run_id = None


_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def safe_key(name: str) -> str:
    """``name`` with characters MLflow refuses in keys replaced by ``_`` (and at most 250 long)."""
    return _KEY_BAD.sub("_", name)[:250]


def flatten_params(config: Mapping[str, Any], prefix: str = "", *,
                   max_value_len: int = 500) -> dict[str, str]:
    """Flatten a nested config into ``dotted.key -> text`` pairs fit for tracker params.

    Nested mappings become dotted keys; lists of mappings are indexed (``constraints.0.text``);
    other lists and scalars become compact JSON. Why: the MLflow UI compares runs by params, and a
    nested dict as one JSON blob cannot be filtered or diffed. Values longer than
    ``max_value_len`` are cut with a trailing ``"..."`` (tracker limit); the full config belongs
    in an artifact.

    Args:
        config: The nested configuration.
        prefix: Key prefix (used in recursion).
        max_value_len: Longest value kept whole.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = _KEY_BAD.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_params(value, f"{name}.", max_value_len=max_value_len))
            else:
                out[name] = "{}"
        elif isinstance(value, list | tuple) and value and all(
                isinstance(v, Mapping) for v in value):
            for i, v in enumerate(value):
                out.update(flatten_params(v, f"{name}.{i}.", max_value_len=max_value_len))
        else:
            out[name] = _truncate(_scalar_text(value), max_value_len)
    return out


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except ValueError:  # nested non-finite floats
        return str(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def git_commit(path: Path | None = None) -> str | None:
    """The git commit of the autolab source tree (or ``path``), ``None`` if not in a git checkout.

    A campaign run should name the code that produced it; an installed wheel has no commit, which
    is not an error.
    """
    where = path if path is not None else Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = res.stdout.strip()
    return commit if res.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None
