"""JSON with comments and trailing commas (wrangler.jsonc / wrangler.json), with positions.

The stdlib ``json`` module neither skips comments nor reports where a value sits, and
the usual JSONC packages drop positions too; the grammar is small enough to parse here.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from dynwf.config._source import ConfigFileError, Location, Node

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS: dict[str, object] = {"true": True, "false": False, "null": None}
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def parse_jsonc(text: str, file: Path) -> Node:
    """Parse ``text``; raise ``ConfigFileError`` at the parser's line and column."""
    parser = _Parser(text, file)
    parser.skip_blank()
    if parser.pos >= len(text):
        raise parser.error("the file is empty; expected an object")
    root = parser.value()
    parser.skip_blank()
    if parser.pos < len(text):
        raise parser.error(f"unexpected {parser.describe()} after the top-level value")
    return root


class _Parser:
    def __init__(self, text: str, file: Path) -> None:
        self.text = text
        self.file = file
        self.pos = 0
        self.line = 1
        self.line_start = 0

    # -- positions -----------------------------------------------------------------

    def here(self) -> Location:
        return Location(self.file, self.line, self.pos - self.line_start + 1)

    def error(self, message: str) -> ConfigFileError:
        return ConfigFileError(
            f"invalid JSON: {message}", self.file, self.line, self.pos - self.line_start + 1
        )

    def describe(self) -> str:
        if self.pos >= len(self.text):
            return "end of file"
        return repr(self.text[self.pos])

    def advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self.text[self.pos] == "\n":
                self.line += 1
                self.line_start = self.pos + 1
            self.pos += 1

    # -- whitespace and comments --------------------------------------------------

    def skip_blank(self) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r\n":
                self.advance()
            elif text.startswith("//", self.pos):
                while self.pos < len(text) and text[self.pos] != "\n":
                    self.advance()
            elif text.startswith("/*", self.pos):
                start = self.here()
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise ConfigFileError(
                        "invalid JSON: unterminated /* comment", self.file, start.line, start.column
                    )
                self.advance(end + 2 - self.pos)
            else:
                return

    # -- values -------------------------------------------------------------------

    def value(self) -> Node:
        if self.pos >= len(self.text):
            raise self.error("unexpected end of file; expected a value")
        char = self.text[self.pos]
        if char == "{":
            return self.object()
        if char == "[":
            return self.array()
        location = self.here()
        if char == '"':
            return Node(self.string(), location)
        for word, literal in _LITERALS.items():
            if self.text.startswith(word, self.pos):
                self.advance(len(word))
                return Node(literal, location)
        if char in "-0123456789":
            return Node(self.number(), location)
        raise self.error(f"unexpected {self.describe()}; expected a value")

    def object(self) -> Node:
        location = self.here()
        self.advance()
        values: dict[str, object] = {}
        children: dict[str, Node] = {}
        keys: dict[str, Location] = {}
        while True:
            self.skip_blank()
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                self.advance()
                break
            if self.pos >= len(self.text) or self.text[self.pos] != '"':
                raise self.error(
                    f"expected a property name in double quotes, found {self.describe()}"
                )
            key_location = self.here()
            key = self.string()
            self.skip_blank()
            if self.pos >= len(self.text) or self.text[self.pos] != ":":
                raise self.error(f"expected ':' after property name, found {self.describe()}")
            self.advance()
            self.skip_blank()
            child = self.value()
            # A repeated key keeps its last value, as JSON.parse and wrangler do.
            values[key] = child.value
            children[key] = child
            keys[key] = key_location
            if not self.separator("}"):
                break
        return Node(values, location, MappingProxyType(children), MappingProxyType(keys))

    def array(self) -> Node:
        location = self.here()
        self.advance()
        items: list[Node] = []
        while True:
            self.skip_blank()
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                self.advance()
                break
            items.append(self.value())
            if not self.separator("]"):
                break
        return Node([item.value for item in items], location, items=tuple(items))

    def separator(self, closer: str) -> bool:
        """Consume ',' (True: more may follow) or the closer (False: container done)."""
        self.skip_blank()
        if self.pos < len(self.text) and self.text[self.pos] == ",":
            self.advance()
            return True
        if self.pos < len(self.text) and self.text[self.pos] == closer:
            self.advance()
            return False
        raise self.error(f"expected ',' or '{closer}', found {self.describe()}")

    def string(self) -> str:
        self.advance()  # the opening quote
        text = self.text
        parts: list[str] = []
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error("unterminated string")
            char = text[self.pos]
            if char == '"':
                self.advance()
                return "".join(parts)
            if char == "\\":
                parts.append(self.escape())
            elif char < " ":
                raise self.error("control character in string; escape it")
            else:
                parts.append(char)
                self.advance()

    def escape(self) -> str:
        code = self.text[self.pos + 1 : self.pos + 2]
        if code in _ESCAPES:
            self.advance(2)
            return _ESCAPES[code]
        if code != "u":
            raise self.error(f"invalid escape '\\{code}' in string")
        unit = self.hex_unit()
        if 0xD800 <= unit < 0xDC00 and self.text.startswith("\\u", self.pos):
            low = int(self.text[self.pos + 2 : self.pos + 6] or "0", 16)
            if 0xDC00 <= low < 0xE000:
                self.hex_unit()
                return chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
        return chr(unit)

    def hex_unit(self) -> int:
        digits = self.text[self.pos + 2 : self.pos + 6]
        if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.error("invalid \\u escape in string")
        self.advance(6)
        return int(digits, 16)

    def number(self) -> int | float:
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.error(f"invalid number starting at {self.describe()}")
        literal = match.group()
        self.advance(len(literal))
        return float(literal) if any(c in literal for c in ".eE") else int(literal)
