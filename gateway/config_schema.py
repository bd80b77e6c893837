"""Reading, merging and type-checking the TOML files of a configuration directory.

This is the mechanical half of :mod:`gateway.config`: it knows TOML and provenance but no meaning.
Every value remembers the file that set it, so each error can say
``conf.d/20-listeners.toml: [listeners.pg] tls: expected one of ...`` and the operator knows which
of several drop-in files to open.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.errors import ConfigError

KeyPath = tuple[str, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Missing:
    """Marks a key with no default: absent means an error."""


REQUIRED: Final = _Missing()


def config_error(file: str | None, where: str, message: str) -> ConfigError:
    """A ConfigError reading ``FILE: WHERE: MESSAGE``, with ``key`` set to WHERE."""
    err = ConfigError(f"{where}: {message}" if where else message, file=file)
    err.key = where or None
    return err


def table_label(path: KeyPath) -> str:
    """``("targets", "pg.prod")`` -> ``[targets."pg.prod"]``, as the operator would write it."""
    parts = [p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in path]
    return "[" + ".".join(parts) + "]"


def show(value: object) -> str:
    """A TOML-ish rendering of a bad value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date/time"
    return type(value).__name__


# --- reading and merging ---------------------------------------------------------------------


@dataclass
class MergedDocument:
    """All files folded into one tree; ``origins`` maps each key path to the file that set it."""

    tables: dict[str, Any] = field(default_factory=dict)
    rules: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    origins: dict[KeyPath, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def config_files(config_dir: Path) -> list[Path]:
    """``*.toml`` directly in ``config_dir``, in lexical order of their names.

    Names starting with a dot are skipped: editors leave lock files such as ``.#50-rules.toml``.
    """
    found = [
        p
        for p in config_dir.iterdir()
        if p.name.endswith(".toml") and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def parse_file(path: Path, display: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=display) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8", file=display
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message already carries "(at line N, column M)".
        raise ConfigError(f"invalid TOML: {exc}", file=display) from exc


def merge_documents(
    documents: Iterable[tuple[str, dict[str, Any]]], *, tables: Collection[str]
) -> MergedDocument:
    """Fold files in order: tables merge key by key (later wins), ``[[rules]]`` concatenate."""
    merged = MergedDocument()
    for file, doc in documents:
        merged.files.append(file)
        for key, value in doc.items():
            if key == "rules":
                if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise config_error(
                        file, "[[rules]]", "expected an array of tables, written [[rules]]"
                    )
                merged.rules.extend((file, rule) for rule in value)
                continue
            if key not in tables:
                expected = ", ".join(f"[{t}]" for t in sorted(tables) if t != "rules")
                expected += ", [[rules]]"
                hint = _did_you_mean(key, tables)
                raise config_error(
                    file, table_label((key,)), f"unknown table{hint}; expected one of {expected}"
                )
            if not isinstance(value, dict):
                raise config_error(
                    file, key, f"expected a table, written [{key}]; got {show(value)}"
                )
            _merge_table(merged.tables, (key,), value, file, merged.origins)
    return merged


def _merge_table(
    into: dict[str, Any],
    path: KeyPath,
    table: dict[str, Any],
    file: str,
    origins: dict[KeyPath, str],
) -> None:
    origins.setdefault(path, file)
    node = into.get(path[-1])
    if not isinstance(node, dict):
        node = into[path[-1]] = {}
    for key, value in table.items():
        sub = (*path, key)
        if isinstance(value, dict):
            _merge_table(node, sub, value, file, origins)
        else:
            node[key] = value
            origins[sub] = file


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# --- typed access with provenance ------------------------------------------------------------


class Table:
    """A view of one table that type-checks each key as it is read.

    Unknown keys are rejected up front (typo safety): a misspelt ``bnd`` must not be reported as a
    missing ``bind``.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        label: str,
        *,
        allowed: Collection[str] | None,
        file: str | None = None,
        origins: Mapping[KeyPath, str] | None = None,
        path: KeyPath = (),
    ) -> None:
        self.data = data
        self.label = label
        self._file = file
        self._origins = origins or {}
        self._path = path
        if allowed is None:
            return  # keyed by operator-chosen names ([listeners.NAME]); children are checked
        for key in data:
            if key not in allowed:
                hint = _did_you_mean(key, allowed)
                raise self.error(
                    key, f"unknown key{hint}; expected one of {', '.join(sorted(allowed))}"
                )

    def file_of(self, key: str | None = None) -> str | None:
        """The file that set ``key``, or that opened this table."""
        if key is not None and (*self._path, key) in self._origins:
            return self._origins[(*self._path, key)]
        if self._path in self._origins:
            return self._origins[self._path]
        return self._file

    def where(self, key: str | None) -> str:
        return f"{self.label} {key}" if key else self.label

    def error(self, key: str | None, message: str) -> ConfigError:
        return config_error(self.file_of(key), self.where(key), message)

    def _get(self, key: str, default: object) -> object:
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            raise self.error(key, "required key is missing")
        return default

    def string(self, key: str, default: str | _Missing = REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string; got {show(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.data else None

    def text(self, key: str, default: str = "") -> str:
        """A string that may be empty (a reason shown to users)."""
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string; got {show(value)}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str | _Missing = REQUIRED) -> str:
        options = list(choices)
        value = self._get(key, default)
        if not isinstance(value, str) or value not in options:
            raise self.error(key, f"expected one of {', '.join(options)}; got {show(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false; got {show(value)}")
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = None, unit: str = "") -> int:
        value = self._get(key, default)
        # TOML booleans are Python ints; "true" is never a meaningful count.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"expected an integer{unit}; got {show(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}{unit}; got {value}")
        return value

    def seconds(self, key: str, default: float, *, maximum: float | None = None) -> float:
        value = self._get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.error(key, f"expected a number of seconds; got {show(value)}")
        if not value > 0 or value == float("inf"):
            raise self.error(key, f"expected a positive number of seconds; got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"expected at most {maximum} seconds; got {value}")
        return float(value)

    def string_list(self, key: str, *, allow_empty: bool = False) -> tuple[str, ...] | None:
        """An array of non-empty strings, or None when the key is absent."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of strings; got {show(value)}")
        if not value and not allow_empty:
            # An empty list would silently match nothing; absence is how "anything" is written.
            raise self.error(key, "empty array matches nothing; remove the key to match anything")
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise self.error(
                    key, f"expected an array of non-empty strings; got an entry {show(item)}"
                )
        return tuple(value)

    def subtable(self, key: str) -> dict[str, Any]:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table; got {show(value)}")
        return dict(value)

    def children(self, *, allowed: Collection[str]) -> list[tuple[str, Table]]:
        """The sub-tables of a table keyed by operator-chosen names (``[listeners.NAME]``)."""
        return [(name, self.child(name, allowed=allowed)) for name in self.data]

    def child(self, key: str, *, allowed: Collection[str] | None) -> Table:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table; got {show(value)}")
        path = (*self._path, key)
        return Table(
            value,
            table_label(path),
            allowed=allowed,
            file=self.file_of(key),
            origins=self._origins,
            path=path,
        )


# --- addresses -------------------------------------------------------------------------------


def parse_address(text: str, *, allow_port_zero: bool) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port). Raises ValueError with the fix."""
    lowest = 0 if allow_port_zero else 1
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f'expected "[IPv6]:port"; got {show(text)}')
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address inside brackets: {show(host)}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f'expected "host:port"; got {show(text)}')
        if ":" in host:
            raise ValueError(
                f'write IPv6 addresses in brackets, "[{host}]:{port_text}"; got {show(text)}'
            )
        if any(c.isspace() for c in host):
            raise ValueError(f"host contains whitespace: {show(host)}")
    if not (port_text.isascii() and port_text.isdigit()) or not lowest <= int(port_text) <= 65535:
        raise ValueError(f"expected a port {lowest}-65535; got {show(text)}")
    return host, int(port_text)
