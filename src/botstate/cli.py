"""The ``botstate`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="botstate")
def cli() -> None:
    """Look inside and move a chat bot's stored state."""


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("botstate-demo"),
    show_default=True,
    help="Folder for the demo's files.",
)
@click.option(
    "--store",
    type=click.Choice(["sqlite", "pickle"]),
    default="sqlite",
    show_default=True,
    help="Which persistence the bot uses.",
)
def demo(folder: Path, store: str) -> None:
    """Run a python-telegram-bot application offline, kill it, and restore its state.

    Example: botstate demo --dir /tmp/demo
    """
    from botstate.demo import run_demo

    sys.exit(run_demo(folder, store))


def main() -> None:
    """Entry point of the ``botstate`` console script."""
    cli()
