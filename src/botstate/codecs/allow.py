"""Allow-lists: the classes and functions that stored data may name.

Both safe codecs rebuild some values from a name written in the data: the restricted pickle
codec looks up every global a pickle refers to, and the JSON codec looks up the class of an
``Enum`` member, of a plain object and of a python-telegram-bot object. Neither imports a module
or fetches an attribute because the data asks for it: the name must pass an :class:`AllowList`
first, and only then is its module imported.

An entry of an allow-list is one of:

* ``"package.module"``: every *class* defined in that module or in its submodules. Functions
  are not included, nor classes the module merely imports from elsewhere (a module that does
  ``from subprocess import Popen`` does not allow ``Popen``).
* ``"package.module:Name"`` or ``"package.module:Outer.Inner"``: exactly that class, function
  or attribute.
* A class or function object: exactly that object.

:data:`DEFAULT_ALLOWED` is always part of the list: the standard library's containers and
scalars that pickles name (``datetime``, ``decimal``, ``uuid``, ``collections`` and a few
builtins), and python-telegram-bot's classes: its ``TelegramObject`` subclasses other than the
bots, its enums, and the ``DefaultValue`` markers its objects may hold.
"""

from __future__ import annotations

import enum
import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

from botstate.errors import CorruptDataError, UnsafeDataError

__all__ = ["DEFAULT_ALLOWED", "AllowEntry", "AllowList"]

#: What an allow-list entry may be: a name (see the module documentation) or the object itself.
AllowEntry: TypeAlias = str | type | Callable[..., object]

#: Globals every allow-list accepts: scalars and containers of the standard library.
DEFAULT_ALLOWED: Final[tuple[str, ...]] = (
    "builtins:bool",
    "builtins:complex",
    "builtins:dict",
    "builtins:float",
    "builtins:frozenset",
    "builtins:int",
    "builtins:list",
    "builtins:object",
    "builtins:set",
    "builtins:slice",
    "builtins:str",
    "builtins:tuple",
    "collections:Counter",
    "collections:OrderedDict",
    "collections:defaultdict",
    "collections:deque",
    "copyreg:_reconstructor",
    "datetime:date",
    "datetime:datetime",
    "datetime:time",
    "datetime:timedelta",
    "datetime:timezone",
    "decimal:Decimal",
    "telegram._utils.defaultvalue:DefaultValue",
    "uuid:SafeUUID",
    "uuid:UUID",
    "zoneinfo:ZoneInfo",
    "zoneinfo:ZoneInfo._unpickle",
)


def _telegram_data_class(obj: object) -> bool:
    """True for python-telegram-bot's data classes: TelegramObjects other than bots, enums."""
    telegram = sys.modules.get("telegram")
    if telegram is None or not isinstance(obj, type):
        return False
    if issubclass(obj, enum.Enum):
        return True
    return issubclass(obj, telegram.TelegramObject) and not issubclass(obj, telegram.Bot)


# Module rules every allow-list has, with the test a class found there must pass.
_DEFAULT_MODULES: Final[dict[str, Callable[[object], bool]]] = {
    "telegram": _telegram_data_class,
}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


class AllowList:
    """The classes and functions a safe codec may look up by name.

    Args:
        entries: Extra entries, added to :data:`DEFAULT_ALLOWED` and python-telegram-bot's
            classes; see the module documentation for their forms.

    Raises:
        ValueError: For an entry that is not a module name, ``module:name`` or an object with
            ``__module__`` and ``__qualname__``.
    """

    __slots__ = ("_exact", "_modules", "_resolved", "entries")

    def __init__(self, entries: Iterable[AllowEntry] = ()) -> None:
        #: The entries given, as text, in order.
        self.entries: tuple[str, ...] = tuple(_entry_text(entry) for entry in entries)
        self._exact: set[tuple[str, str]] = set()
        self._modules: dict[str, Callable[[object], bool] | None] = dict(_DEFAULT_MODULES)
        for text in (*DEFAULT_ALLOWED, *self.entries):
            module, _, name = text.partition(":")
            if name:
                self._exact.add((module, name))
            else:
                self._modules[module] = None
        # Classes already checked for the JSON codec's writer: class -> allowed.
        self._resolved: dict[type, bool] = {}

    def resolve(self, module: str, name: str) -> object:
        """Return the global *name* of *module* if the list allows it; import it only then.

        Raises:
            UnsafeDataError: When the list does not allow it; nothing is imported.
            CorruptDataError: When it is allowed but cannot be found.
        """
        rule = self._rule(module, name)
        try:
            found: object = importlib.import_module(module)
        except ImportError as exc:
            raise CorruptDataError(f"{module}.{name} cannot be imported: {exc}") from exc
        for part in name.split("."):
            try:
                found = getattr(found, part)
            except AttributeError as exc:
                raise CorruptDataError(f"{module}.{name} does not exist: {exc}") from exc
        if rule is not None:
            # A module rule holds only for a class defined in that package under this name.
            package, test = rule
            if not (
                isinstance(found, type)
                and found.__qualname__ == name
                and _under(found.__module__, package)
                and (test is None or test(found))
            ):
                raise self._refusal(module, name)
        return found

    def allows_class(self, cls: type) -> bool:
        """True when *cls* is allowed and can be found again by its module and name."""
        allowed = self._resolved.get(cls)
        if allowed is None:
            try:
                allowed = self.resolve(cls.__module__, cls.__qualname__) is cls
            except CorruptDataError:
                allowed = False
            self._resolved[cls] = allowed
        return allowed

    def _rule(self, module: str, name: str) -> tuple[str, Callable[[object], bool] | None] | None:
        """The module rule that allows *name* (package, test), or None for an exact entry."""
        if (module, name) in self._exact:
            return None
        # Module rules allow classes by plain name only: no dunder attributes, nothing local.
        if all(part.isidentifier() and not part.startswith("__") for part in name.split(".")):
            for package, test in self._modules.items():
                if _under(module, package):
                    return package, test
        raise self._refusal(module, name)

    def _refusal(self, module: str, name: str) -> UnsafeDataError:
        return UnsafeDataError(
            f"refused to load {module}.{name}: it is not in the allow-list; add "
            f"'{module}:{name}' to the codec's allow= only if you trust that code"
        )

    def __repr__(self) -> str:
        return f"AllowList({list(self.entries)!r})"


def _entry_text(entry: AllowEntry) -> str:
    if isinstance(entry, str):
        module, separator, name = entry.partition(":")
        dotted = module.split(".") + (name.split(".") if separator else [])
        if all(part.isidentifier() for part in dotted):
            return entry
    else:
        defined_in = getattr(entry, "__module__", None)
        qualname = getattr(entry, "__qualname__", None)
        if isinstance(defined_in, str) and isinstance(qualname, str) and "<" not in qualname:
            return f"{defined_in}:{qualname}"
    raise ValueError(
        f"cannot allow {entry!r}: give a module name ('mybot.states'), 'module:Name' or the "
        "class or function itself"
    )
