"""wrangler.toml: values from ``tomllib``, positions from a light scan of the same text.

``tomllib`` is the authority on what the document means but reports no positions, so
after it accepts the text a small scanner walks the table headers, ``key = value``
lines, inline tables and arrays, and records where each path (``("workflows", 0,
"name")``) starts. A value the scanner cannot place falls back to its parent's place.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right
from pathlib import Path
from types import MappingProxyType

from dynwf.config._source import ConfigFileError, Location, Node

PathKey = tuple[str | int, ...]

_TOMLLIB_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = frozenset(",]}#\n")


def parse_toml(text: str, file: Path) -> Node:
    """Parse ``text``; raise ``ConfigFileError`` at tomllib's line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOMLLIB_POSITION.search(message)
        reason = _TOMLLIB_POSITION.sub("", message).strip()
        if found:
            line, column = int(found.group(1)), int(found.group(2))
        else:  # "(at end of document)"
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
            reason = reason.replace("(at end of document)", "").strip() + " at end of document"
        raise ConfigFileError(f"invalid TOML: {reason}", file, line, column) from None
    scan = _Scanner(text)
    scan.document()
    root = Location(file, 1, 1)
    return _build(data, (), root, scan, file)


def _build(value: object, path: PathKey, fallback: Location, scan: _Scanner, file: Path) -> Node:
    where = scan.values.get(path)
    location = Location(file, *scan.line_col(where)) if where is not None else fallback
    if isinstance(value, dict):
        children: dict[str, Node] = {}
        keys: dict[str, Location] = {}
        for key, child in value.items():
            children[key] = _build(child, (*path, key), location, scan, file)
            key_at = scan.keys.get((*path, key))
            keys[key] = (
                Location(file, *scan.line_col(key_at))
                if key_at is not None
                else children[key].location
            )
        return Node(value, location, MappingProxyType(children), MappingProxyType(keys))
    if isinstance(value, list):
        items = tuple(
            _build(item, (*path, index), location, scan, file) for index, item in enumerate(value)
        )
        return Node(value, location, items=items)
    return Node(value, location)


class _Scanner:
    """Records the offset of every key and value it can place, by path.

    Runs only on text tomllib accepted, so it can skip what it does not need to
    understand (the contents of strings, numbers, dates) without re-checking it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.values: dict[PathKey, int] = {}
        self.keys: dict[PathKey, int] = {}
        # Elements seen so far of each array of tables, keyed by its resolved path;
        # a header like [workflows.limits] refers to the last [[workflows]] element.
        self.aot_lengths: dict[PathKey, int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_col(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def remember(self, path: PathKey, value_at: int, key_at: int) -> None:
        self.values.setdefault(path, value_at)
        self.keys.setdefault(path, key_at)

    # -- document level ------------------------------------------------------------

    def document(self) -> None:
        table: PathKey = ()
        text = self.text
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(text):
                return
            start = self.pos
            if text.startswith("[[", start):
                self.pos += 2
                dotted = self.dotted_key()
                array = (*self.resolve(dotted[:-1], start), dotted[-1])
                index = self.aot_lengths.get(array, 0)
                self.aot_lengths[array] = index + 1
                self.remember(array, start, start)
                table = (*array, index)
                self.remember(table, start, start)
                self.pos = text.index("]]", self.pos) + 2
            elif text[start] == "[":
                self.pos += 1
                table = self.resolve(self.dotted_key(), start)
                self.remember(table, start, start)
                self.pos = text.index("]", self.pos) + 1
            else:
                self.key_value(table)

    def resolve(self, dotted: list[str], header_at: int) -> PathKey:
        """A header's dotted key as a path, stepping into the last element of each AoT."""
        path: PathKey = ()
        for part in dotted:
            path = (*path, part)
            self.remember(path, header_at, header_at)
            if path in self.aot_lengths:
                path = (*path, self.aot_lengths[path] - 1)
        return path

    def key_value(self, table: PathKey) -> None:
        key_at = self.pos
        dotted = self.dotted_key()
        path = table
        for part in dotted:
            path = (*path, part)
            self.remember(path, key_at, key_at)
        self.skip_blank()
        self.pos += 1  # "="
        self.skip_blank()
        self.values[path] = self.pos
        self.value(path)

    def dotted_key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_blank()
            parts.append(self.key_part())
            self.skip_blank()
            if self.pos < len(self.text) and self.text[self.pos] == ".":
                self.pos += 1
                continue
            return parts

    def key_part(self) -> str:
        text = self.text
        if text[self.pos] in "\"'":
            start = self.pos
            self.skip_string()
            # The key's own spelling, unescaped by tomllib so it matches the parsed dict.
            quoted = text[start : self.pos]
            parsed = tomllib.loads(f"k = {quoted}")["k"]
            return str(parsed)
        match = _BARE_KEY.match(text, self.pos)
        end = match.end() if match else self.pos + 1
        self.pos = end
        return text[match.start() : end] if match else ""

    # -- values --------------------------------------------------------------------

    def value(self, path: PathKey) -> None:
        text = self.text
        char = text[self.pos] if self.pos < len(text) else ""
        if char in "\"'":
            self.skip_string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            while self.pos < len(text) and text[self.pos] not in _SCALAR_END:
                self.pos += 1

    def array(self, path: PathKey) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.text[self.pos] == "]":
                self.pos += 1
                return
            self.values[(*path, index)] = self.pos
            self.keys[(*path, index)] = self.pos
            self.value((*path, index))
            index += 1
            self.skip_blank(newlines=True)
            if self.text[self.pos] == ",":
                self.pos += 1

    def inline_table(self, path: PathKey) -> None:
        self.pos += 1
        while True:
            self.skip_blank(newlines=True)
            if self.text[self.pos] == "}":
                self.pos += 1
                return
            self.key_value(path)
            self.skip_blank(newlines=True)
            if self.text[self.pos] == ",":
                self.pos += 1

    def skip_string(self) -> None:
        text = self.text
        quote = text[self.pos]
        if text.startswith(quote * 3, self.pos):
            end = self.pos + 3
            while True:
                end = text.index(quote * 3, end)
                if quote == '"' and _escaped(text, end):
                    end += 1
                    continue
                break
            end += 3
            # Up to two quotes may sit right before the closing delimiter (TOML 1.0).
            for _ in range(2):
                if end < len(text) and text[end] == quote:
                    end += 1
            self.pos = end
            return
        end = self.pos + 1
        while text[end] != quote or (quote == '"' and _escaped(text, end)):
            end += 1
        self.pos = end + 1

    def skip_blank(self, *, newlines: bool = False) -> None:
        text = self.text
        blank = " \t\r\n" if newlines else " \t"
        while self.pos < len(text):
            if text[self.pos] in blank:
                self.pos += 1
            elif text[self.pos] == "#" and newlines:
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return


def _escaped(text: str, quote_at: int) -> bool:
    """Whether the quote at ``quote_at`` follows an odd run of backslashes."""
    slashes = 0
    while quote_at - slashes - 1 >= 0 and text[quote_at - slashes - 1] == "\\":
        slashes += 1
    return slashes % 2 == 1
