"""The ``botstate`` command line: look inside any store, dump it, check it, repair it, move it.

Every command takes a store URL (``sqlite:///path/bot.db``, ``pickle:///path/bot.pickle``,
``json:///path/bot.json``, ``redis://host:port/db?prefix=...``,
``postgresql://user@host/db?table=...``) or a path to an existing store, recognised by its
contents. The work is done by :mod:`botstate.tools` and :mod:`botstate.migrate`; this module
parses arguments and writes the output.

Conventions: exit code 0 on success, 1 when a failure was found or a command failed, 2 for a
usage error. An error is one line on stderr (the traceback too with ``--debug``). Passwords in
URLs are masked in all output. Output to a pipe has no colour and no progress bar.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import pprint
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from botstate.codecs import JSONCodec
from botstate.errors import BotStateError, CorruptDataError, EncodingError, UnsafeDataError
from botstate.kinds import KINDS, SINGLE_KINDS, Kind, describe
from botstate.migrate import MigrationError
from botstate.migrate import migrate as copy_store
from botstate.tools import (
    STORED_BOT,
    TOOL_ALLOWED,
    ToolUsageError,
    add_working_directory,
    count_records,
    delete_record,
    open_store,
    parse_key,
    records,
    same_store,
    set_record,
    summarize,
)
from botstate.urls import mask_url, url_path

__all__ = ["main"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Copies of at least this many records show a progress bar (on a terminal).
PROGRESS_FROM: Final = 1000

_CONTEXT: Final[dict[str, Any]] = {"help_option_names": ["-h", "--help"], "max_content_width": 99}


@click.group(context_settings=_CONTEXT)
@click.version_option(package_name="botstate")
def cli() -> None:
    """Look inside, check, repair and move a chat bot's stored state.

    \b
    A store is named by a URL or by the path of an existing file:
      sqlite:///var/lib/bot/state.db      pickle:///var/lib/bot/bot.pickle
      json:///var/lib/bot/bot.json        pickle:///var/lib/bot/bot?single_file=false
      redis://127.0.0.1:6379/0?prefix=mybot
      postgresql://bot@127.0.0.1:5432/bots?table=mybot

    Pickle data is loaded in restricted mode: only standard types, python-telegram-bot's
    classes and those given with --allow. Pass --trust only for stores your own bot wrote.

    Exit codes: 0 success, 1 a failure found or a command that failed, 2 a usage error.
    """


def _store_options(function: _F) -> _F:
    """The options every command that reads stored values takes."""
    function = click.option(
        "--debug", is_flag=True, help="Show the traceback of an error, and debug logging."
    )(function)
    function = click.option(
        "--trust",
        is_flag=True,
        help="Load pickle data without restriction. Loading a pickle can run code: only for "
        "stores your own bot wrote.",
    )(function)
    return click.option(
        "--allow",
        multiple=True,
        metavar="MODULE[:NAME]",
        help="Also load this class (or every class of this module), e.g. mybot.states:Step. "
        "Repeatable; classes are imported from the installed packages or the current folder.",
    )(function)


# -- inspect ------------------------------------------------------------------------------------


@cli.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--largest", default=5, show_default=True, help="How many of the largest records to list."
)
@_store_options
def inspect(
    url: str, as_json: bool, largest: int, allow: tuple[str, ...], trust: bool, debug: bool
) -> int:
    """Show what a store holds: its format, the records and bytes of each kind, the
    conversations, the largest records and the time of the last write.

    A database's records are counted and measured without being decoded.

    \b
    Example: botstate inspect sqlite:///var/lib/bot/state.db
    """
    with _reporting(debug, [url]):
        _prepare(allow, trust)
        opened = open_store(url, trust=trust, allow=allow)
        try:
            summary = summarize(opened, largest, in_use=opened.busy)
        finally:
            opened.close()
        if as_json:
            _echo(json.dumps(summary.as_json(), indent=2))
            return 0
        _echo(opened.url)
        version = f", botstate format {summary.format_version}" if summary.format_version else ""
        _echo(f"  store       {summary.description}{version}, codec {summary.codec}")
        if summary.created is not None:
            _echo(f"  created     {_time(summary.created)}")
        _echo(f"  last write  {_time(summary.last_write) if summary.last_write else 'not known'}")
        busy = {True: "yes, by another process", False: "no", None: "cannot be told"}
        _echo(f"  in use      {busy[summary.in_use]}")
        if summary.incomplete:
            _echo(
                f"  {_red('INCOMPLETE')}  a migration into it did not finish "
                f"({summary.incomplete})"
            )
        _echo("")
        _echo(f"  {'kind':<15}{'records':>9}{'bytes':>12}")
        for kind, counts in summary.kinds.items():
            _echo(f"  {kind:<15}{counts.records:>9}{_size(counts.bytes):>12}")
        total = sum(counts.records for counts in summary.kinds.values())
        size = sum(counts.bytes for counts in summary.kinds.values())
        _echo(f"  {'total':<15}{total:>9}{_size(size):>12}")
        if summary.handlers:
            _echo("")
            _echo("  conversations")
            for name, keys in sorted(summary.handlers.items()):
                _echo(f"    {name!r}: {keys} {'key' if keys == 1 else 'keys'}")
        if summary.largest and any(size for _, size in summary.largest):
            _echo("")
            _echo("  largest records")
            for name, size in summary.largest:
                _echo(f"    {_size(size):>10}  {name}")
        if summary.unreadable_keys:
            _echo("")
            _echo(f"  {_red('unreadable keys')} ('botstate check' shows why)")
            for name in summary.unreadable_keys:
                _echo(f"    {name}")
        if summary.set_aside:
            _echo("")
            _echo(
                f"  {_red('set aside')} (damaged records a bot replaced; their bytes are kept "
                "under kind 'damaged', as <kind>/<key>/<unix time>)"
            )
            for key, size in summary.set_aside:
                _echo(f"    {_size(size):>10}  {key}")
    return 0


# -- dump ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("url")
@click.option("--kind", type=click.Choice(KINDS), help="Only the records of this kind.")
@click.option("--key", help="Only this record (with --kind): 42, or '[\"signup\",[42,42]]'.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["json", "repr"]),
    default="json",
    show_default=True,
    help="json: botstate's typed JSON notation. repr: Python's repr.",
)
@_store_options
def dump(
    url: str,
    kind: Kind | None,
    key: str | None,
    output: str,
    allow: tuple[str, ...],
    trust: bool,
    debug: bool,
) -> int:
    """Print the stored records, one JSON object per line:
    {"kind": ..., "key": ..., "value": ...}. With --kind and --key (or a kind that is one
    record, bot_data or callback_data), print that record's value alone.

    Values are written in botstate's typed JSON notation: {"$tuple": [...]}, {"$set": [...]},
    {"$datetime": "..."}, {"$bot": null} for the bot... (see docs/formats.md). The key is the
    one --key takes.

    \b
    Examples:
      botstate dump sqlite:///var/lib/bot/state.db | jq 'select(.kind == "user_data")'
      botstate dump bot.pickle --kind user_data --key 42
      botstate dump bot.pickle --kind conversations --format repr
    """
    with _reporting(debug, [url]):
        _prepare(allow, trust)
        if key is not None and kind is None:
            raise ToolUsageError("--key needs --kind")
        text = JSONCodec((*TOOL_ALLOWED, *allow))

        def show(name: str, value: object, indent: int | None) -> str:
            if output == "repr":
                return pprint.pformat(value) if indent else repr(value)
            try:
                return text.to_text(value, bot=STORED_BOT, indent=indent)
            except EncodingError as exc:
                raise EncodingError(
                    f"cannot write {name} as JSON: {exc} (--format repr shows it)"
                ) from exc

        single = kind is not None and (key is not None or kind in SINGLE_KINDS)
        record_key = parse_key(kind, key) if single and kind is not None else None
        opened = open_store(url, trust=trust, allow=allow)
        try:
            if single and kind is not None:
                found = opened.store.load_record(kind, record_key, STORED_BOT)
                if found is None:
                    raise _NotFound(f"{opened.url} holds no {describe(kind, record_key)}")
                _echo(show(describe(kind, record_key), found.value, 2))
                return 0
            failed = 0
            for record in records(opened, [kind] if kind else KINDS):
                try:
                    if record.error is not None:
                        raise record.error
                    value = show(record.name, record.value, None)
                except BotStateError as exc:
                    # One record that cannot be shown does not stop the others.
                    failed += 1
                    problem = f"{opened.url}: "
                    if not isinstance(exc, EncodingError):
                        problem += f"{record.name}: "
                    _echo(f"{_command_name()}: error: {problem}{exc}{_hint(exc)}", err=True)
                    continue
                if output == "repr":
                    _echo(f"{record.name} = {value}")
                    continue
                line = {"kind": record.kind, "key": _key_json(record.kind, record.key_text)}
                head = json.dumps(line, ensure_ascii=False)[:-1]
                _echo(f'{head}, "value": {value}}}')
        finally:
            opened.close()
    return 1 if failed else 0


class _NotFound(BotStateError):
    """The record a command names is not stored."""


def _key_json(kind: Kind, key_text: str) -> object:
    """The key as JSON data, in the form --key takes."""
    if kind in SINGLE_KINDS:
        return None
    if kind in ("user_data", "chat_data"):
        return int(key_text) if key_text.lstrip("-").isdecimal() else key_text
    try:
        return json.loads(key_text)
    except ValueError:
        return key_text


# -- check --------------------------------------------------------------------------------------


@cli.command()
@click.argument("url")
@_store_options
def check(url: str, allow: tuple[str, ...], trust: bool, debug: bool) -> int:
    """Decode every record and report each one that fails, by kind and key.

    Exits with 1 when any record fails, or when the store is marked incomplete by an
    interrupted migration. Records refused by the restricted pickle loading are reported as
    REFUSED: pass --allow for their classes (or --trust) if you trust them.

    \b
    Example: botstate check pickle:///var/lib/bot/bot.pickle
    """
    with _reporting(debug, [url]):
        _prepare(allow, trust)
        opened = open_store(url, trust=trust, allow=allow)
        failed = checked = 0
        try:
            note = opened.incomplete()
            if note:
                failed += 1
                _echo(f"{_red('INCOMPLETE')} a migration into it did not finish ({note})")
            # Kind by kind: a file is decoded whole and fails as one, the other files go on.
            files_failed: set[str] = set()
            for kind in KINDS:
                try:
                    for record in records(opened, [kind]):
                        checked += 1
                        if record.error is not None:
                            failed += 1
                            _echo(f"{_failure_label(record.error)} {record.name}: {record.error}")
                except CorruptDataError as exc:
                    if str(exc) not in files_failed:
                        files_failed.add(str(exc))
                        failed += 1
                        _echo(f"{_failure_label(exc)} {exc}{_hint(exc)}")
        finally:
            opened.close()
        outcome = f"{failed} failed" if failed else "all decode"
        noun = "record" if checked == 1 else "records"
        _echo(f"checked {checked} {noun} in {opened.url}: {outcome}")
    return 1 if failed else 0


# -- migrate ------------------------------------------------------------------------------------


@cli.command()
@click.argument("source")
@click.argument("destination")
@click.option(
    "--kinds",
    multiple=True,
    metavar="KIND[,KIND...]",
    help=f"Copy only these kinds ({', '.join(KINDS)}). Repeatable.",
)
@click.option(
    "--overwrite", is_flag=True, help="Delete the destination's records of the kinds first."
)
@click.option(
    "--merge",
    is_flag=True,
    help="Keep the destination's other records; the source's replace the same keys.",
)
@_store_options
def migrate(
    source: str,
    destination: str,
    kinds: tuple[str, ...],
    overwrite: bool,
    merge: bool,
    allow: tuple[str, ...],
    trust: bool,
    debug: bool,
) -> int:
    """Copy every record from SOURCE to DESTINATION, any store to any other, then check that
    the destination holds the same records (count and a digest of each).

    A destination that holds records of the kinds copied is refused unless --overwrite or
    --merge is given. A migration that stops part way leaves the destination marked
    incomplete (a single pickle or JSON file is written at once and stays untouched): bots,
    inspect and check say so, and running the migration again with --overwrite replaces it.
    A new file destination may be given as a path ending in .db, .sqlite, .pickle, .pkl or
    .json.

    \b
    Examples:
      botstate migrate pickle:///srv/bot/bot.pickle sqlite:///srv/bot/state.db
      botstate migrate bot.pickle bot.db --trust
      botstate migrate sqlite:///srv/bot/state.db 'redis://127.0.0.1:6379/0?prefix=mybot'
    """
    with _reporting(debug, [source, destination]):
        _prepare(allow, trust)
        if overwrite and merge:
            raise ToolUsageError("choose one of --overwrite and --merge")
        chosen = _kinds(kinds)
        if same_store(source, destination):
            raise ToolUsageError(f"{mask_url(source)} is both the source and the destination")
        origin = open_store(source, trust=trust, allow=allow)
        try:
            if origin.busy:
                _echo(
                    f"botstate migrate: warning: {origin.url} is open in another process; "
                    "records it writes from now on are not copied",
                    err=True,
                )
            before = _files_of(destination)
            target = open_store(destination, mode="create", trust=trust, allow=allow)
            untouched = True
            try:
                total = sum(count_records(origin, chosen).values())
                with _progress(total, "copying") as advance:
                    done = copy_store(
                        origin,
                        target,
                        kinds=chosen,
                        merge="overwrite" if overwrite else "merge" if merge else "new",
                        allow=allow,
                        progress=advance,
                    )
                untouched = False
            except MigrationError:
                untouched = False  # it says what the destination holds now
                raise
            finally:
                target.close()
                if untouched:
                    # A migration that failed before writing anything (a source it could not
                    # read) leaves no new, empty store behind that looks like its result.
                    for created in _files_of(destination) - before:
                        created.unlink(missing_ok=True)
        finally:
            origin.close()
        per_kind = ", ".join(f"{count} {kind}" for kind, count in done.copied.items() if count)
        _echo(
            f"copied {done.total} records from {origin.url} to {target.url}"
            + (f" ({per_kind})" if per_kind else "")
        )
        if done.deleted:
            _echo(f"deleted {done.deleted} records the destination held before (--overwrite)")
        if done.kept:
            _echo(f"kept {done.kept} records of the destination that the source does not have")
        _echo(
            f"verified: the destination holds the same {done.total} records "
            "(count and content digests match)"
        )
    return 0


def _files_of(url: str) -> set[Path]:
    """The files a file store's URL or path names (``bot.db`` and ``bot.db-wal``, the files
    of the one-file-per-kind layout...); none for a server store."""
    parts = urllib.parse.urlsplit(url)
    if "://" not in url:
        path = Path(url)
    elif parts.scheme in ("sqlite", "pickle", "json"):
        path = url_path(parts)
    else:
        return set()
    if not path.parent.is_dir():
        return set()
    return set(path.parent.glob(glob.escape(path.name) + "*"))


def _kinds(given: Sequence[str]) -> list[Kind]:
    """The kinds of ``--kinds``, which may be repeated and comma separated; all by default."""
    if not given:
        return list(KINDS)
    names = [name.strip() for text in given for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise ToolUsageError(f"unknown kind {unknown[0]!r}; the kinds are {', '.join(KINDS)}")
    return [kind for kind in KINDS if kind in names]


# -- set and delete -----------------------------------------------------------------------------

_REPAIR_NOTE = """
    Refused while a bot has an SQLite database or a pickle or JSON file open (stop the bot
    first). Redis and PostgreSQL stores are shared by design and cannot tell: the change is
    one more write, which a bot using share_state loads before its next update of that
    record.
"""


@cli.command(
    "set",
    help="""Store one record, replacing the stored one.

    \b
    Examples:
      botstate set sqlite:///srv/bot/state.db --kind user_data --key 42 --json '{"name": "Ada"}'
      botstate dump bot.db --kind bot_data | botstate set bot.db --kind bot_data --json -
    """
    + _REPAIR_NOTE,
)
@click.argument("url")
@click.option("--kind", required=True, type=click.Choice(KINDS), help="The record's kind.")
@click.option("--key", help="The record's key, as dump prints it: 42, or '[\"signup\",[42,42]]'.")
@click.option(
    "--json",
    "value_text",
    required=True,
    metavar="VALUE",
    help="The new value in botstate's JSON notation (as dump prints it); - reads standard input.",
)
@_store_options
def set_(
    url: str,
    kind: Kind,
    key: str | None,
    value_text: str,
    allow: tuple[str, ...],
    trust: bool,
    debug: bool,
) -> int:
    """``botstate set``; its help is given to the decorator."""
    with _reporting(debug, [url]):
        _prepare(allow, trust)
        record_key = parse_key(kind, key)
        text = sys.stdin.read() if value_text == "-" else value_text
        try:
            value = JSONCodec((*TOOL_ALLOWED, *allow)).from_text(text, bot=STORED_BOT)
        except CorruptDataError as exc:
            raise ToolUsageError(f"--json: {exc}{_hint(exc)}") from None
        opened = open_store(url, mode="change", trust=trust, allow=allow)
        try:
            existed = set_record(opened, kind, record_key, value)
        finally:
            opened.close()
        done = "replaced" if existed else "stored new"
        _echo(f"{done} {describe(kind, record_key)} in {opened.url}")
    return 0


@cli.command(
    help="""Delete one record.

    \b
    Example: botstate delete sqlite:///srv/bot/state.db --kind user_data --key 42
    """
    + _REPAIR_NOTE
)
@click.argument("url")
@click.option("--kind", required=True, type=click.Choice(KINDS), help="The record's kind.")
@click.option("--key", help="The record's key, as dump prints it: 42, or '[\"signup\",[42,42]]'.")
@_store_options
def delete(
    url: str, kind: Kind, key: str | None, allow: tuple[str, ...], trust: bool, debug: bool
) -> int:
    """``botstate delete``; its help is given to the decorator."""
    with _reporting(debug, [url]):
        _prepare(allow, trust)
        record_key = parse_key(kind, key)
        opened = open_store(url, mode="change", trust=trust, allow=allow)
        try:
            deleted = delete_record(opened, kind, record_key)
        finally:
            opened.close()
        if not deleted:
            raise _NotFound(f"{opened.url} holds no {describe(kind, record_key)}; nothing deleted")
        _echo(f"deleted {describe(kind, record_key)} from {opened.url}")
    return 0


# -- demo ---------------------------------------------------------------------------------------


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


# -- plumbing -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``botstate`` console script."""
    try:
        code = cli.main(args=argv, prog_name="botstate", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "botstate"
        if _NO_ARGUMENTS is not None and isinstance(exc, _NO_ARGUMENTS) and exc.ctx is not None:
            _echo(exc.ctx.get_help(), err=True)  # "botstate" alone: the help
        else:
            _echo(f"{where}: error: {exc.format_message()} (see '{where} --help')", err=True)
        code = 2
    except click.ClickException as exc:
        _echo(f"botstate: error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except click.Abort:
        _echo("botstate: interrupted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


# What click 8.2 and later raise for a group called without a command (8.1 shows the help).
_NO_ARGUMENTS: Final[type[click.UsageError] | None] = getattr(
    click.exceptions, "NoArgsIsHelpError", None
)


def _prepare(allow: Sequence[str], trust: bool) -> None:
    if allow or trust:
        add_working_directory()


@contextlib.contextmanager
def _reporting(debug: bool, urls: Sequence[str]) -> Iterator[None]:
    """Turn an error into one line on stderr and the exit code; log warnings to stderr."""
    passwords = [p for p in (urllib.parse.urlsplit(url).password for url in urls) if p]
    command = _command_name()

    def masked(text: str) -> str:
        text = mask_url(text)
        for password in passwords:
            text = text.replace(password, "***")
        return text

    # botstate's warnings (a record skipped, a connection retried) go to stderr; the drivers'
    # only when they are errors. Every line is masked.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter(f"{command}: %(levelname)s: %(message)s", masked))
    handler.addFilter(
        lambda line: line.name.startswith("botstate") or line.levelno >= logging.ERROR
    )
    logging.basicConfig(level=logging.ERROR, handlers=[handler], force=True)
    logging.getLogger("botstate").setLevel(logging.DEBUG if debug else logging.WARNING)
    try:
        yield
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
    except KeyboardInterrupt:
        _echo(f"{command}: interrupted", err=True)
        raise SystemExit(130) from None
    except Exception as exc:
        # Usage errors (ToolUsageError and the ValueErrors of parsing) and a missing driver
        # exit with 2; a failing store or command with 1.
        code, message = 1, str(exc)
        if isinstance(exc, (ValueError, ImportError)) and not isinstance(exc, BotStateError):
            code = 2
        elif not isinstance(exc, (BotStateError, OSError)):
            message = f"internal error: {type(exc).__name__}: {exc} (--debug shows where)"
        if debug:
            sys.stderr.write(masked(traceback.format_exc()))
        message = masked(" ".join((message + _hint(exc)).split()))
        _echo(f"{command}: error: {message}", err=True)
        raise SystemExit(code) from None


class _MaskingFormatter(logging.Formatter):
    """Formats log lines with passwords masked."""

    def __init__(self, pattern: str, mask: Callable[[str], str]) -> None:
        super().__init__(pattern)
        self._mask = mask

    def format(self, record: logging.LogRecord) -> str:
        return self._mask(super().format(record))


def _command_name() -> str:
    """``botstate dump``...: how messages name the running command."""
    return click.get_current_context().command_path


def _failure_label(exc: BaseException) -> str:
    return _red("REFUSED" if isinstance(exc, UnsafeDataError) else "FAILED")


def _hint(exc: BaseException) -> str:
    if isinstance(exc, UnsafeDataError):
        return (
            " (if you trust this data, pass --allow MODULE:NAME for its classes, or --trust to "
            "load a pickle without restriction)"
        )
    return ""


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long work, only on a terminal."""
    if total < PROGRESS_FROM or not sys.stderr.isatty():
        yield lambda done: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _echo(text: str, err: bool = False) -> None:
    click.echo(text, err=err, color=False if os.environ.get("NO_COLOR") else None)


def _red(text: str) -> str:
    return click.style(text, fg="red", bold=True)


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "not known"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
