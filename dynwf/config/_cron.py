"""Cron expressions as Cloudflare reads them: parse, check, and the next fire time in UTC.

Cloudflare parses Cron Triggers and Workflow ``schedules`` with its ``saffron`` crate
(the local engine in workers-sdk vendors the same parser), so this module follows its
grammar, not Vixie cron's or croniter's:

- five fields separated by spaces: minute 0-59, hour 0-23, day-of-month 1-31, month
  1-12 or JAN-DEC, day-of-week **1-7 or SUN-SAT (1 is Sunday; 0 is an error)**;
  names are case-insensitive; no seconds field, no ``@daily`` shorthands, no ``?``;
- ``*``, lists ``a,b``, ranges ``a-b`` (``a > b`` wraps around, ``FRI-MON``), steps
  ``*/n``, ``a/n``, ``a-b/n`` (n from 1 to the field's span);
- day-of-month: ``L`` (last day), ``LW`` (last weekday), ``L-n`` (n days before the
  last, n 1-30), ``L-nW``, ``nW`` (weekday nearest the n-th); each stands alone;
- day-of-week: ``L`` (Saturday), ``dL`` (last d of the month), ``d#n`` (n-th d, 1-5);
- when both day fields are restricted, a day matches if either matches (OR);
- times are UTC, to the minute.

croniter was the alternative: it numbers weekdays 0-6 from Sunday (so ``1`` is Monday
there and Sunday here), accepts a seconds field and ``@`` shorthands Cloudflare rejects,
and reads ``L``/``W`` differently; a translation layer would be more code than this.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from dynwf.errors import ValidationError

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # 1-7 on Cloudflare
# How far ahead next_after looks: SAT#5 in February alone recurs every 28 years.
_SEARCH_YEARS = 400


class CronError(ValidationError):
    """A cron expression Cloudflare would refuse; ``reason`` says which part and why."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"invalid cron expression {expression!r}: {reason}")
        self.expression = expression
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is the value low + i

    @property
    def span(self) -> str:
        text = f"{self.low}-{self.high}"
        return text + (f" or {self.names[0]}-{self.names[-1]}" if self.names else "")


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day-of-week", 1, 7, _DAYS)

_FIELD_HINT = "five fields: minute hour day-of-month month day-of-week"


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression. Day-of-week values are 1-7 from Sunday, as written."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    dom: frozenset[int] | None  # None: '*'
    dom_rule: tuple[str, int] | None  # ("L"|"LW"|"W", n): a stand-alone day-of-month form
    dow: frozenset[int] | None  # None: '*'
    dow_rule: tuple[str, int, int] | None  # ("L", day, 0) or ("#", day, nth)

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        any_dom = self.dom is None and self.dom_rule is None
        any_dow = self.dow is None and self.dow_rule is None
        if any_dom and any_dow:
            return True
        if any_dow:
            return self._dom_matches(day)
        if any_dom:
            return self._dow_matches(day)
        return self._dom_matches(day) or self._dow_matches(day)

    def _dom_matches(self, day: date) -> bool:
        if self.dom is not None:
            return day.day in self.dom
        assert self.dom_rule is not None
        kind, n = self.dom_rule
        last = calendar.monthrange(day.year, day.month)[1]
        if kind == "L":  # L (n=0) or L-n
            return last - n >= 1 and day.day == last - n
        if kind == "LW":  # LW (n=0) or L-nW
            target = last - n
            if target < 1:
                return False
            return day.day == _nearest_weekday(day.year, day.month, target, last)
        return n <= last and day.day == _nearest_weekday(day.year, day.month, n, last)  # nW

    def _dow_matches(self, day: date) -> bool:
        weekday = (day.weekday() + 1) % 7 + 1  # Monday=0 in Python; Sunday=1 here
        if self.dow is not None:
            return weekday in self.dow
        assert self.dow_rule is not None
        kind, wanted, nth = self.dow_rule
        if weekday != wanted:
            return False
        if kind == "L":
            return day.day + 7 > calendar.monthrange(day.year, day.month)[1]
        return (day.day - 1) // 7 + 1 == nth

    def next_after(self, after_ms: int) -> int | None:
        """The first fire time (epoch ms, UTC, whole minute) strictly after ``after_ms``."""
        start = datetime.fromtimestamp(after_ms // 60_000 * 60, tz=UTC) + timedelta(minutes=1)
        day = start.date()
        first = True
        for _ in range(_SEARCH_YEARS * 366):
            if self.matches_day(day):
                at = self._first_time(start.hour if first else 0, start.minute if first else 0)
                if at is not None:
                    moment = datetime(day.year, day.month, day.day, at[0], at[1], tzinfo=UTC)
                    return int(moment.timestamp()) * 1000
            day += timedelta(days=1)
            first = False
        return None

    def _first_time(self, hour: int, minute: int) -> tuple[int, int] | None:
        for h in sorted(self.hours):
            if h < hour:
                continue
            floor = minute if h == hour else 0
            for m in sorted(self.minutes):
                if m >= floor:
                    return (h, m)
        return None


def _nearest_weekday(year: int, month: int, target: int, last: int) -> int:
    """The weekday (Mon-Fri) nearest day ``target``, staying in the month, as saffron does."""
    weekday = date(year, month, target).weekday()
    if weekday == 5:  # Saturday
        return 3 if target == 1 else target - 1
    if weekday == 6:  # Sunday
        return last - 2 if target == last else target + 1
    return target


def parse_cron(expression: str) -> Cron:
    """The parsed expression, or ``CronError`` naming the field and what is wrong."""
    if not isinstance(expression, str):
        raise CronError(str(expression), "a cron expression is a string")
    if expression != expression.strip(" \t"):
        raise CronError(expression, "remove the spaces before or after the expression")
    if expression.strip() == "":
        raise CronError(expression, f"it is empty; write {_FIELD_HINT}")
    parts = re.split(r"[ \t]+", expression)
    if any(not re.fullmatch(r"[ -~]+", p) for p in parts):
        raise CronError(expression, f"it has a character other than spaces between {_FIELD_HINT}")
    if len(parts) != 5:
        extra = (
            " (Cloudflare has no seconds or year field)"
            if len(parts) > 5
            else " (@daily-style shorthands are not accepted)"
            if parts[0].startswith("@")
            else ""
        )
        raise CronError(expression, f"it has {len(parts)} field(s); write {_FIELD_HINT}{extra}")
    minute, hour, dom, month, dow = parts
    try:
        minutes = _plain(minute, _MINUTE)
        hours = _plain(hour, _HOUR)
        dom_set, dom_rule = _day_of_month(dom)
        months = _plain(month, _MONTH)
        dow_set, dow_rule = _day_of_week(dow)
    except _Bad as bad:
        raise CronError(expression, str(bad)) from None
    return Cron(
        expression,
        frozenset(range(0, 60)) if minutes is None else minutes,
        frozenset(range(0, 24)) if hours is None else hours,
        frozenset(range(1, 13)) if months is None else months,
        dom_set,
        dom_rule,
        dow_set,
        dow_rule,
    )


class _Bad(Exception):
    pass


def _value(text: str, field: _Field, whole: str) -> int:
    if text.isdigit():
        value = int(text)
        if field.low <= value <= field.high:
            return value
        hint = ""
        if field is _DOW and value == 0:
            hint = "; Cloudflare counts SUN=1 ... SAT=7, so Sunday is 1 or SUN"
        raise _Bad(f"the {field.name} field {whole!r}: {text} is out of range {field.span}{hint}")
    upper = text.upper()
    if upper in field.names:
        return field.low + field.names.index(upper)
    expected = f"a number {field.span}" if not field.names else field.span
    raise _Bad(f"the {field.name} field {whole!r}: {text!r} is not {expected}")


def _step(text: str, field: _Field, whole: str) -> int:
    most = field.high - field.low
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise _Bad(f"the {field.name} field {whole!r}: the step /{text} must be a number 1-{most}")
    return int(text)


def _wrap(start: int, end: int, step: int, field: _Field) -> list[int]:
    """``start-end/step``; a start after the end wraps around the field's span."""
    if start <= end:
        return list(range(start, end + 1, step))
    order = list(range(start, field.high + 1)) + list(range(field.low, end + 1))
    return order[::step]


def _item(item: str, field: _Field, whole: str, first: bool) -> list[int]:
    """One list item: ``v``, ``a-b``, ``v/n``, ``a-b/n``, or ``*`` (its lowest value) after a ','."""
    if item == "":
        raise _Bad(f"the {field.name} field {whole!r} has an empty list item")
    body, slash, step_text = item.partition("/")
    start_text, dash, end_text = body.partition("-")
    if start_text == "*":
        if first:  # a leading '*' is the whole field ('*' or '*/n'), never a list item
            raise _Bad(f"the {field.name} field {whole!r}: '*' stands alone or as '*/n'")
        start = field.low
    else:
        start = _value(start_text, field, whole)
    end = _value(end_text, field, whole) if dash else (field.high if slash else start)
    step = _step(step_text, field, whole) if slash else 1
    return _wrap(start, end, step, field)


def _list(text: str, field: _Field, whole: str) -> frozenset[int]:
    items = text.split(",")
    values: set[int] = set()
    for index, item in enumerate(items):
        values.update(_item(item, field, whole, first=index == 0))
    return frozenset(values)


def _plain(text: str, field: _Field) -> frozenset[int] | None:
    """A minute, hour or month field; None for '*'."""
    if text == "*":
        return None
    if text.startswith("*/"):
        head, _, rest = text.partition(",")
        values = set(_wrap(field.low, field.high, _step(head[2:], field, text), field))
        return frozenset(values | (_list(rest, field, text) if rest else set()))
    return _list(text, field, text)


_LAST = re.compile(r"L(?:-(\d+))?(W?)", re.IGNORECASE)


def _day_of_month(text: str) -> tuple[frozenset[int] | None, tuple[str, int] | None]:
    if text == "*":
        return None, None
    if text.startswith("*/"):
        return _plain_days(text), None
    if text[:1] in ("L", "l"):
        last = _LAST.fullmatch(text)
        if last is None or text[:1] != "L" or (last.group(2) and last.group(2) != "W"):
            raise _Bad(f"the day-of-month field {text!r}: write L, LW, L-n or L-nW (n 1-30), alone")
        n = int(last.group(1)) if last.group(1) else 0
        if last.group(1) is not None and not 1 <= n <= 30:
            raise _Bad(f"the day-of-month field {text!r}: the offset in L-n must be 1-30")
        return None, ("LW" if last.group(2) else "L", n)
    if text.endswith("W") and text[:-1].isdigit():
        return None, ("W", _value(text[:-1], _DOM, text))
    if "W" in text.upper() or "L" in text.upper() or "#" in text:
        raise _Bad(
            f"the day-of-month field {text!r}: W and L only appear as nW, L, LW, L-n or L-nW, "
            "each alone (no list, range or step), and # belongs to the day-of-week field"
        )
    return _plain_days(text), None


def _plain_days(text: str) -> frozenset[int]:
    values = _plain(text, _DOM)
    assert values is not None
    return values


def _day_of_week(text: str) -> tuple[frozenset[int] | None, tuple[str, int, int] | None]:
    if text == "*":
        return None, None
    if text == "L":
        return frozenset({7}), None  # saffron reads a lone L as Saturday
    if "#" in text:
        day_text, _, nth_text = text.partition("#")
        day = _value(day_text, _DOW, text)
        if not nth_text.isdigit() or not 1 <= int(nth_text) <= 5:
            raise _Bad(f"the day-of-week field {text!r}: the n in d#n must be 1-5")
        return None, ("#", day, int(nth_text))
    if text.endswith("L") and not any(c in text for c in ",-/"):
        return None, ("L", _value(text[:-1], _DOW, text), 0)
    values = _plain(text, _DOW)
    assert values is not None
    return values, None
