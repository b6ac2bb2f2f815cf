"""What every ``scar`` command shares: the one-line error handling, output checks, warnings on
stderr, the rich console and the progress bar.

Every mistake a user can make ends in one line on stderr (``scar: error: ...``) and exit status
2; nothing is written in that case. Results are JSON files written atomically.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ..errors import ConfigError, ScarError
from ..store import CheckpointWarning

# a command's work, given a progress callback (done, total) or None
Work = Callable[[Callable[[int, int], None] | None], Any]


def run(command: click.Command, argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``command`` and exit: one line and exit status 2 for every user error, 130 on
    Ctrl-C, the command's own status otherwise."""
    try:
        rv = command.main(args=argv, prog_name="scar", standalone_mode=False)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "scar"
        die(f"{cmd}: error: {e.format_message()}", 2)
    except click.ClickException as e:
        die(f"scar: error: {e.format_message()}", e.exit_code or 1)
    except ScarError as e:
        die(f"scar: error: {e}", 2)
    except (KeyboardInterrupt, click.Abort):
        die("scar: interrupted", 130)
    sys.exit(rv if isinstance(rv, int) else 0)


def one_line(message: str) -> str:
    """``message`` with every run of white space (newlines too) made one space."""
    return " ".join(message.split())


def die(message: str, status: int) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``status``."""
    print(one_line(message), file=sys.stderr)
    sys.exit(status)


def warn(message: str) -> None:
    """``scar: warning: <message>`` as one line on stderr."""
    click.echo(f"scar: warning: {one_line(message)}", err=True)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Every :class:`CheckpointWarning` raised inside, printed with :func:`warn` at the end."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        try:
            yield
        finally:
            for w in caught:
                warn(str(w.message))


def check_output(path: str) -> Path:
    """Fail now, before any work, if ``path`` cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"output {path!r} is a directory; give a file name such as {path}/result.json"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write output {path!r}: directory {str(parent)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(f"cannot write output {path!r}: {e.strerror or e}") from None
    return p


def console(stderr: bool = False, piped_width: int = 180) -> Console:
    """A rich console on stdout (or stderr); ``piped_width`` columns when not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps the whole table on one line per row instead of rich's 80 columns.
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else piped_width)


def with_progress(work: Work, total: int, quiet: bool) -> Any:
    """``work(progress)`` under a progress bar on stderr (``total`` steps; removed when done);
    ``work(None)`` if ``quiet``."""
    if quiet:
        return work(None)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=console(stderr=True),
    ) as bar:
        task = bar.add_task("trials", total=total)
        return work(lambda done, _total: bar.update(task, completed=done))
