"""The terminals every command-line entry point writes to, and its one way of failing.

Errors are printed as plain text on one line: a message may hold brackets that rich would read as
markup, and a re-wrapped message breaks copyable paths and the options it names (``--ray local``
must stay greppable in a CI log however wide the terminal is).
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise.

    Args:
        message: What was wrong and what was expected (plain text, no markup).
        code: The README's exit code for this kind of failure.

    Returns:
        The ``typer.Exit`` the caller raises.
    """
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    return typer.Exit(code)


def say_command(lead: str, *commands: str) -> None:
    """``lead``, then each command to copy on a line of its own, never broken.

    Why: rich wraps a long line at spaces, and a wrap inside ``autolab resume runs/<campaign>``
    puts the command and its folder on two lines, which a copy-paste then runs without its
    argument. The command lines are soft-wrapped (the terminal may fold them visually; the text
    stays one line); the lead is ordinary text.
    """
    console.print(lead, markup=False)
    for command in commands:
        console.print(f"  {command}", markup=False, soft_wrap=True)
