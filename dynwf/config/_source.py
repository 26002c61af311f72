"""Config values that remember where they were written, and JavaScript's view of them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import TypeGuard

from dynwf.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Location:
    """A 1-based line and column in a file."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Node:
    """A parsed value (plain Python data) plus where it and its children sit in the file.

    ``value`` is what a JSON/TOML parser returns (dict, list, str, int, float, bool,
    None, or a TOML date/time); ``children``/``items`` wrap the same data with positions.
    """

    value: object
    location: Location
    children: Mapping[str, Node] = field(default_factory=lambda: MappingProxyType({}))
    key_locations: Mapping[str, Location] = field(default_factory=lambda: MappingProxyType({}))
    items: tuple[Node, ...] = ()

    def get(self, key: str) -> Node | None:
        return self.children.get(key)

    def text(self, key: str) -> str | None:
        """The string value of ``key``, or None when it is absent or not a string."""
        child = self.children.get(key)
        return child.value if child is not None and isinstance(child.value, str) else None

    def key_location(self, key: str) -> Location:
        return self.key_locations.get(key, self.location)

    def at(self, key: str) -> Location:
        """Where ``key``'s value is written, or this node's own place when it is absent."""
        child = self.children.get(key)
        return child.location if child is not None else self.location

    def is_object(self) -> bool:
        return isinstance(self.value, dict)

    def is_array(self) -> bool:
        return isinstance(self.value, list)


class ConfigFileError(ConfigError):
    """The config file is missing, unreadable or unparseable (a usage error, exit 2).

    ``line``/``column`` are the parser's, 1-based, when the file could be read.
    """

    def __init__(
        self, message: str, file: Path, line: int | None = None, column: int | None = None
    ) -> None:
        where = str(file) if line is None else f"{file}:{line}:{column or 1}"
        super().__init__(f"{where}: {message}")
        self.reason = message
        self.file = file
        self.line = line
        self.column = column


def js_json(value: object) -> str:
    """``JSON.stringify(value)`` as wrangler's messages print it (compact, integral floats bare)."""
    return json.dumps(_as_js(value), separators=(",", ":"), ensure_ascii=False)


def _as_js(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # JavaScript has one number type: 5.0 prints as 5.
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, dict):
        return {str(k): _as_js(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_js(v) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def js_typeof(value: object) -> str:
    """JavaScript's ``typeof`` for a parsed value: wrangler's type checks are written in it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def is_js_integer(value: object) -> TypeGuard[int | float]:
    """``Number.isInteger``: true for 3 and 3.0, false for booleans and 3.5."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()
