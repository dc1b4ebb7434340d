"""``botstate migrate``: copy every record from one store to another, and prove the copy.

A migration runs in these steps:

1. It refuses to copy a store onto itself, and onto a destination that holds records of the
   kinds to copy (or is marked incomplete) unless told to ``overwrite`` them (they are deleted
   first) or to ``merge`` (records of the source replace those with the same key, the others
   stay).
2. It marks the destination incomplete: a stamp entry in a database, Redis prefix or PostgreSQL
   table (:data:`~botstate.stores.base.INCOMPLETE`), a file beside the files of the
   one-file-per-kind layout (:data:`~botstate.stores.files.INCOMPLETE_SUFFIX`). A single
   pickle or JSON file needs no mark: it is written once, atomically, at the end.
3. It copies the records in batches, each one durable write: every record is decoded with the
   source's codec and encoded with the destination's, the bot placeholder kept.
4. It reads the destination back and compares the number of records and a digest of each
   (:func:`botstate.tools.content_digest`) with what it read from the source.
5. It removes the mark.

So a migration that stops part way, killed or failing, leaves the destination marked
incomplete: opening it as a persistence raises :class:`~botstate.errors.CorruptDataError`
saying so, and ``botstate inspect`` and ``botstate check`` report it. Running the migration
again with ``overwrite`` replaces what the first one left. A failure before anything was
written takes the mark away again, leaving the destination as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from botstate._atomic import replace_file
from botstate.codecs import JSONCodec
from botstate.codecs.allow import AllowEntry
from botstate.errors import BotStateError, EncodingError
from botstate.kinds import KINDS, Kind
from botstate.stores.base import INCOMPLETE, Change, Delete, RecordStore
from botstate.stores.files import SnapshotFileStore
from botstate.tools import (
    STORED_BOT,
    TOOL_ALLOWED,
    Opened,
    Record,
    ToolUsageError,
    content_digest,
    count_records,
    records,
)

__all__ = ["BATCH", "MigrationError", "Migration", "migrate"]

_log = logging.getLogger(__name__)

#: Records per write into a record store.
BATCH: Final = 500

# How many failing records a message names before it says "and N more".
_NAMED: Final = 5

Merge = Literal["new", "overwrite", "merge"]


class MigrationError(BotStateError):
    """A migration failed; the message says whether the destination was changed."""


@dataclass
class Migration:
    """What a migration did.

    Attributes:
        copied: The records copied, per kind.
        deleted: The destination's records deleted first (``overwrite``).
        kept: The destination's records of the copied kinds that the source does not have, and
            that stay (``merge``).
    """

    copied: dict[Kind, int]
    deleted: int = 0
    kept: int = 0

    @property
    def total(self) -> int:
        return sum(self.copied.values())


def migrate(
    source: Opened,
    destination: Opened,
    *,
    kinds: Sequence[Kind] = KINDS,
    merge: Merge = "new",
    allow: Iterable[AllowEntry] = (),
    progress: Callable[[int], None] | None = None,
) -> Migration:
    """Copy the records of *kinds* from *source* to *destination* and verify the copy.

    Args:
        source: The store to copy from (opened to read).
        destination: The store to copy to (opened with ``mode="create"``).
        kinds: The kinds to copy.
        merge: ``"new"``: the destination must hold no records of *kinds*. ``"overwrite"``:
            its records of *kinds* are deleted first. ``"merge"``: they stay unless the source
            has the same key.
        allow: The classes the tools were allowed to load, for the digests.
        progress: Called with the number of records copied since the last call.

    Raises:
        ToolUsageError: When the destination is the source, or not empty and *merge* is
            ``"new"``.
        MigrationError: When the copy failed or does not match the source; the message says
            whether the destination is untouched or marked incomplete.
    """
    if source.identity == destination.identity or _same_stamp(source, destination):
        raise ToolUsageError(f"{source.url} is both the source and the destination")
    existing = count_records(destination, kinds)
    note = destination.incomplete()
    if merge == "new" and (any(existing.values()) or note):
        held = ", ".join(f"{count} {kind}" for kind, count in existing.items() if count)
        raise ToolUsageError(
            f"{destination.url} is not empty ({held or 'marked incomplete'}); pass --overwrite "
            "to replace those kinds or --merge to copy over them"
        )

    run = _Run(source, destination, kinds, allow, progress)
    marked = run.mark(f"from {source.url}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
    try:
        deletions = run.delete_existing() if merge == "overwrite" else []
        digests = run.copy(deletions)
        kept = run.verify(digests, merging=merge == "merge")
    except (Exception, KeyboardInterrupt) as exc:
        if not run.changed:
            if marked:
                run.unmark()
            raise
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        state = (
            "is marked incomplete; fix the cause and run the migration again with --overwrite"
            if marked
            else "was written; see 'botstate check'"
        )
        raise MigrationError(
            f"the migration stopped: {reason}. {destination.url} {state}"
        ) from exc
    if marked:
        run.unmark()
    _log.info(
        "copied %d records from %s to %s", sum(run.copied.values()), source.url, destination.url
    )
    return Migration(run.copied, len(deletions), kept)


def _same_stamp(source: Opened, destination: Opened) -> bool:
    """Whether two stores hold the same creation stamp: one store named two ways (a server's
    host written as a name and as an address, a default port left out), which an overwrite
    would empty."""
    # Both stamps were read when the stores were opened.
    created = (source.meta or {}).get("created")
    return created is not None and created == (destination.meta or {}).get("created")


class _Run:
    """The steps of one migration, and whether the destination was changed yet."""

    def __init__(
        self,
        source: Opened,
        destination: Opened,
        kinds: Sequence[Kind],
        allow: Iterable[AllowEntry],
        progress: Callable[[int], None] | None,
    ) -> None:
        self.source = source
        self.destination = destination
        self.store = destination.store
        self.kinds = kinds
        self.digest_codec = JSONCodec((*TOOL_ALLOWED, *allow))
        self.progress = progress or (lambda done: None)
        self.changed = False
        self.copied = dict.fromkeys(kinds, 0)

    def mark(self, note: str) -> bool:
        """Mark the destination incomplete where a kill could leave it half written."""
        if isinstance(self.store, RecordStore):
            self.store.write_meta({INCOMPLETE: note})
            return True
        if isinstance(self.store, SnapshotFileStore) and not self.store.single_file:
            # Durable and readable by the owner only, as the store's own files.
            replace_file(self.store.incomplete_mark, note.encode() + b"\n")
            return True
        return False

    def unmark(self) -> None:
        if isinstance(self.store, RecordStore):
            self.store.write_meta({INCOMPLETE: None})
        elif isinstance(self.store, SnapshotFileStore):
            self.store.incomplete_mark.unlink(missing_ok=True)

    def delete_existing(self) -> list[Change]:
        """Delete the destination's records of the kinds: at once in a record store; a file
        store gets them back as deletions, written together with the copy."""
        found = list(records(self.destination, self.kinds, decode=False))
        if isinstance(self.store, RecordStore):
            # By key text, so that records whose key cannot be read go too.
            addresses = [Delete(record.kind, record.key_text) for record in found]
            for start in range(0, len(addresses), BATCH):
                self.changed = True
                self.store.write_rows([], addresses[start : start + BATCH])
        return [Change(record.kind, record.key, None, None) for record in found]

    def copy(self, deletions: list[Change]) -> dict[tuple[Kind, str], bytes]:
        """Copy every record; return the digest of each, by (kind, key text)."""
        digests: dict[tuple[Kind, str], bytes] = {}
        # A record store is written in batches; a file store at once, deletions first.
        by_batch = isinstance(self.store, RecordStore)
        changes: list[Change] = [] if by_batch else list(deletions)
        failures: list[str] = []
        failed = done = 0
        for record in records(self.source, self.kinds):
            if record.error is not None:
                raise MigrationError(
                    f"{self.source.url}: cannot read {record.name}: {record.error} "
                    "('botstate check' lists every such record)"
                )
            try:
                data = self.store.codec.encode(record.value, bot=STORED_BOT)
            except EncodingError as exc:
                failed += 1
                if len(failures) < _NAMED:
                    failures.append(f"{record.name}: {exc}")
                continue
            changes.append(Change(record.kind, record.key, record.value, data))
            digests[(record.kind, record.key_text)] = content_digest(
                record.value, self.digest_codec
            )
            self.copied[record.kind] += 1
            done += 1
            if done % BATCH == 0 and not failed:
                if by_batch:
                    self.write(changes)
                    changes = []
                self.progress(BATCH)
        if failed:
            more = f" and {failed - len(failures)} more" if failed > len(failures) else ""
            raise MigrationError(
                f"{failed} records cannot be stored in {self.destination.url} with codec "
                f"{self.store.codec.name!r}: {'; '.join(failures)}{more}"
            )
        self.write(changes)
        self.progress(done % BATCH)
        return digests

    def write(self, changes: list[Change]) -> None:
        if not changes:
            return
        # A single file is replaced whole or not at all; other stores may be left part written.
        whole = isinstance(self.store, SnapshotFileStore) and self.store.single_file
        self.changed = self.changed or not whole
        self.store.write(changes, STORED_BOT)
        self.changed = True

    def verify(self, digests: dict[tuple[Kind, str], bytes], merging: bool) -> int:
        """Read the destination back and compare it with the source's digests; return the
        number of records it holds that the source does not have (only allowed when merging)."""
        if isinstance(self.store, SnapshotFileStore):
            self.store.close()  # forget what is in memory: read the files as written
        found: set[tuple[Kind, str]] = set()
        wrong: list[Record] = []
        extra = 0
        for record in records(self.destination, self.kinds):
            address = (record.kind, record.key_text)
            expected = digests.get(address)
            if expected is None:
                extra += 1
                continue
            found.add(address)
            if (
                record.error is not None
                or content_digest(record.value, self.digest_codec) != expected
            ):
                wrong.append(record)
        missing = len(digests) - len(found)
        if wrong or missing or (extra and not merging):
            names = ", ".join(record.name for record in wrong[:_NAMED])
            raise MigrationError(
                f"the copy in {self.destination.url} does not match the source: {missing} "
                f"records missing, {len(wrong)} different{f' ({names})' if names else ''}, "
                f"{extra} not in the source"
            )
        return extra
