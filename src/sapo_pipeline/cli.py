"""Project commands: ``kedro run`` with a short answer to a configuration or input error.

Kedro picks up this module's ``cli`` group and lets its commands override its own (the
documented way to change a project's commands). ``run`` is Kedro's own run command -- the same
options, the same session -- except that a wrong parameter (:class:`ConfigError`) or bad input
(:class:`InputError`, a missing file or folder) ends in one message saying what, where and what
was expected, and exit status 2, instead of a traceback of a few hundred lines. ``--verbose``
(``-v``) keeps the traceback.
"""

from __future__ import annotations

from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from omegaconf.errors import OmegaConfBaseException

from sapo_pipeline.config_utils import ConfigError, InputError

#: What a user fixes in a parameter or an input file, not a bug in the code (OmegaConf's errors:
#: a template that does not resolve, such as ``--params seed=abc`` or a misspelt ``${...}``).
CONFIG_ERRORS = (ConfigError, OmegaConfBaseException)
USER_ERRORS = (*CONFIG_ERRORS, InputError, FileNotFoundError, NotADirectoryError)


class UserError(click.ClickException):
    """A configuration or input error, shown as one message (exit status 2)."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


def explain(exc: BaseException) -> str:
    """The message of a user error: its kind and its own text (which names the file, line and
    field, or the parameter path and what was expected), plus where to see the traceback."""
    kind = "configuration error" if isinstance(exc, CONFIG_ERRORS) else "input error"
    return f"{kind}: {exc}\n(run with --verbose for the traceback)"


@click.group(name="sapo_pipeline")
def cli() -> None:
    """sapo-pipeline's project commands."""


@cli.command(name="run", params=[*kedro_run.params, click.Option(
    ["--verbose", "-v"], is_flag=True, help="Show the traceback of a configuration or input "
                                             "error.")], help=kedro_run.help)
def run(verbose: bool, **kwargs: Any) -> Any:
    try:
        return kedro_run.callback(**kwargs)
    except USER_ERRORS as exc:
        if verbose:
            raise
        raise UserError(explain(exc)) from exc
