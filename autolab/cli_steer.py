"""The chemist-in-the-loop commands: ``autolab decide``, ``autolab add``, ``autolab invalidate``.

The logic lives in :mod:`autolab.steer` (usable from Python); this module only parses arguments,
prints, and maps errors to the README's exit codes: 2 for invalid input (a bad row, an unknown
experiment, a decision that breaks a bound), 4 for a journal failure (no campaign, or it is
running and holds the journal). ``autolab run/resume --review`` build their reviewer here too.
"""
# Like cli.py: heavy layers are imported inside the command that needs them (so --help stays
# instant), and typer commands take their arguments positionally.
# ruff: noqa: PLC0415, PLR0917

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autolab.console import console, err_console, fail, say_command
from autolab.exceptions import ConfigError, JournalError

if TYPE_CHECKING:
    from autolab.config import CampaignConfig
    from autolab.steer import Reviewer

EXIT_INPUT, EXIT_INTERRUPTED, EXIT_FAILURE = 2, 3, 4


#: The modes ``--review`` takes (``autolab.steer.REVIEWERS`` and ``off``; kept here so the
#: option is checked before anything heavy is imported or printed).
REVIEW_MODES = ("off", "terminal", "file")


def _check_review(value: str | None) -> str | None:
    """Refuse an unknown ``--review`` at parse time, naming the flag (exit 2)."""
    if value is not None and value not in REVIEW_MODES:
        raise typer.BadParameter(f"expected one of {', '.join(REVIEW_MODES)}, got {value!r}")
    return value


#: ``--review`` of ``autolab run`` and ``autolab resume``.
ReviewOption = Annotated[str | None, typer.Option(
    "--review", callback=_check_review,
    help="Review every proposal before it runs: 'terminal' (approve, edit or reject here), "
         "'file' (RUN/proposals/exp-NNN.yaml, then 'autolab decide') or 'off'; default: the "
         "campaign file's review.mode.")]
#: ``--reviewer`` of ``autolab run``, ``resume``, ``decide``, ``add`` and ``invalidate``.
ReviewerOption = Annotated[str | None, typer.Option(
    "--reviewer", help="Who decides (journaled); default $USER.")]


def make_cli_reviewer(review: str | None, reviewer: str | None,
                      cfg: CampaignConfig) -> Reviewer | None:
    """The reviewer ``--review`` (or the campaign file's ``review.mode``) asks for.

    Raises:
        ConfigError: Unknown mode.
    """
    from autolab.steer import TerminalReviewer, make_reviewer

    mode = review or cfg.review.mode
    if mode == "terminal":
        from rich.markup import escape

        return TerminalReviewer(reviewer, ask=lambda prompt: console.input(escape(prompt)),
                                show=lambda line: console.print(line, markup=False))
    return make_reviewer(mode, reviewer)


def stop_exit_code(result: Any) -> int | None:
    """The exit code of a stop that is not a normal end, with its message printed.

    ``waiting for a decision`` exits 3 (nothing is lost; decide, then resume); a device left
    unsafe by the shutdown exits 4 and names it. ``None`` for every other stop.
    """
    from autolab.campaign import StopReason

    if result.stop_reason is StopReason.WAITING:
        say_command("waiting for a decision (see above); nothing is lost. Continue with:",
                    f"autolab resume {result.run_dir}")
        return EXIT_INTERRUPTED
    if result.stop_reason is StopReason.DEVICE_UNSAFE:
        err_console.print(f"[bold red]device failure:[/] unsafe device(s): "
                          f"{', '.join(result.unsafe)}; see the shutdown lines above and "
                          f"{result.run_dir}/journal.jsonl")
        return EXIT_FAILURE
    return None


def decide(
    run_dir: Annotated[Path, typer.Argument(help="Campaign folder waiting for a decision.")],
    experiment: Annotated[str, typer.Argument(help="The experiment, e.g. exp-004 or 4.")],
    decision: Annotated[str, typer.Argument(help="approve, edit or reject.")],
    values: Annotated[list[str] | None, typer.Argument(
        help="For edit: new values as NAME=VALUE (the rest stay as proposed).")] = None,
    reason: Annotated[str, typer.Option(help="Why (required to reject).")] = "",
    reviewer: ReviewerOption = None,
) -> None:
    """Decide on a waiting proposal (file review mode); then run 'autolab resume RUN_DIR'."""
    from autolab.steer import decide as write_decision
    from autolab.steer import parse_assignments

    try:
        edits = parse_assignments(" ".join(values or [])) or None
        path = write_decision(run_dir, experiment, decision, reason=reason, conditions=edits,
                              reviewer=reviewer)
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
    except JournalError as err:
        raise fail(str(err), EXIT_FAILURE) from err
    say_command(f"decision written to {path}; continue with:", f"autolab resume {run_dir}")


def add(
    run_dir: Annotated[Path, typer.Argument(help="Campaign folder.")],
    results: Annotated[Path, typer.Argument(
        help="CSV with the searched parameters, pl_peak_nm, fwhm_nm, qy (0-1) and optionally "
             "their *_err, abs_peak_nm and a note.")],
    reviewer: ReviewerOption = None,
) -> None:
    """Add experiments made outside the loop (flask batch, offline QY) to a campaign."""
    from autolab.records import experiment_label
    from autolab.steer import PROPOSALS_DIR, add_results

    proposals = sorted((run_dir / PROPOSALS_DIR).glob("exp-*.yaml"))
    try:
        added = add_results(run_dir, results, by=reviewer)
    except ConfigError as err:
        raise fail(f"{err} (nothing was added)", EXIT_INPUT) from err
    except JournalError as err:
        raise fail(str(err), EXIT_FAILURE) from err
    for t in added:
        f = t.features
        assert f is not None  # manual trials always carry their outcomes
        console.print(f"added {experiment_label(t.index)} (manual): PL {f.pl_peak_nm:.1f} nm, "
                      f"FWHM {f.fwhm_nm:.1f} nm, QY {100 * f.qy:.1f}%", markup=False)
    withdrawn = [p.stem for p in proposals if not p.exists()]
    if withdrawn:
        console.print(f"the proposal waiting as {', '.join(withdrawn)} was withdrawn: these "
                      "results took its number; on resume the optimizer proposes again",
                      markup=False)
    say_command("the optimizer learns them on resume; MLflow gets them then or with sync:",
                f"autolab resume {run_dir}", f"autolab sync {run_dir}")


def invalidate(
    run_dir: Annotated[Path, typer.Argument(help="Campaign folder.")],
    experiment: Annotated[str, typer.Argument(help="The experiment, e.g. exp-003 or 3.")],
    reason: Annotated[str, typer.Option(help="Why it is invalid (journaled); required.")],
    reviewer: ReviewerOption = None,
) -> None:
    """Mark a finished experiment invalid after the fact (e.g. a leak found later)."""
    from autolab.records import experiment_label
    from autolab.steer import invalidate as mark_invalid

    try:
        done = mark_invalid(run_dir, experiment, reason, by=reviewer)
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
    except JournalError as err:
        raise fail(str(err), EXIT_FAILURE) from err
    console.print(f"{experiment_label(done.trial.index)} is invalid: {reason}", markup=False)

    def name(t: Any) -> str:
        return "none" if t is None else experiment_label(t.index)

    if name(done.best_before) != name(done.best_after):
        console.print(f"best is now {name(done.best_after)} (was {name(done.best_before)})",
                      markup=False)
    say_command("the optimizer forgets it on resume; MLflow tags it on sync:",
                f"autolab resume {run_dir}", f"autolab sync {run_dir}")


def register(app: typer.Typer) -> None:
    """Add ``decide``, ``add`` and ``invalidate`` to the ``autolab`` command line."""
    app.command("decide")(decide)
    app.command("add")(add)
    app.command("invalidate")(invalidate)
