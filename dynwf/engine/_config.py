"""Durations and step config: parsing, defaults, validation, retry delays.

One place decides what a step's config means; the frozen copy in the journal
is what replay and retries use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from dynwf.errors import InvalidDurationError, InvalidStepConfigError

Backoff = Literal["constant", "linear", "exponential"]

_UNIT_MS: dict[str, float] = {
    "millisecond": 1,
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
    "month": 30 * 86_400_000,
    "year": 365.25 * 86_400_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+?)s?\s*$")
MAX_SLEEP_MS = 365 * 86_400_000


class RetriesDict(TypedDict, total=False):
    limit: int
    delay: str | int
    backoff: Backoff


class StepConfigDict(TypedDict, total=False):
    retries: RetriesDict
    timeout: str | int
    sensitive: Literal["output"]


# What every view shows for the output of a step configured ``sensitive: "output"``.
REDACTED = "[REDACTED]"
# A callable ``retries.delay`` as the journal freezes it: the callable runs where the
# tenant's code runs, once per failed attempt, and says the base delay of that retry.
DYNAMIC_DELAY = "[dynamic]"
# How long a delay callable may take (Cloudflare's DELAY_FUNCTION_TIMEOUT_MS).
DELAY_FUNCTION_TIMEOUT_S = 5.0


DEFAULT_CONFIG: StepConfigDict = {
    "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
    "timeout": "10 minutes",
}


def parse_duration(value: object, *, what: str = "duration") -> int:
    """Milliseconds from an int (ms) or ``"<number> <unit>[s]"``; anything else is rejected."""
    if isinstance(value, bool):
        raise InvalidDurationError(
            f"{what} {value!r} is not a duration: use milliseconds or '<n> <unit>'"
        )
    if isinstance(value, int):
        if value < 0:
            raise InvalidDurationError(f"{what} {value!r} is negative: durations are >= 0 ms")
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and m.group(2).lower() in _UNIT_MS:
            return int(float(m.group(1)) * _UNIT_MS[m.group(2).lower()])
        raise InvalidDurationError(
            f"{what} {value!r} is not a duration: write milliseconds as an int, or "
            f"'<number> <unit>' with unit one of {', '.join(u for u in _UNIT_MS if u != 'millisecond')}"
        )
    raise InvalidDurationError(
        f"{what} {value!r} has type {type(value).__name__}: use int milliseconds or '<n> <unit>'"
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    limit: int
    delay_ms: int  # 0 for a dynamic delay: the callable's answer is the base instead
    backoff: Backoff
    dynamic: bool = False

    def delay_before_retry(self, attempts_made: int, base_ms: int | None = None) -> int:
        """Delay before the next attempt once ``attempts_made`` attempts have failed;
        ``base_ms`` is a dynamic delay's answer for this attempt (it goes through the
        backoff like a fixed delay)."""
        k = attempts_made
        base = self.delay_ms if base_ms is None else base_ms
        if self.backoff == "constant":
            return base
        if self.backoff == "linear":
            return base * k
        return int(base * 2 ** (k - 1))


@dataclass(frozen=True, slots=True)
class StepConfig:
    """A resolved, validated step config; ``as_dict`` is what the journal freezes."""

    retries: RetryPolicy
    timeout_ms: int
    raw: Mapping[str, Any]

    @property
    def sensitive(self) -> bool:
        """The step's output is shown as ``REDACTED`` (it still flows to later steps)."""
        return self.raw.get("sensitive") == "output"

    def as_dict(self) -> dict[str, Any]:
        frozen: dict[str, Any] = {
            "retries": {
                "limit": self.retries.limit,
                "delay": self.raw["retries"]["delay"],
                "backoff": self.retries.backoff,
            },
            "timeout": self.raw["timeout"],
        }
        if self.sensitive:
            frozen["sensitive"] = "output"
        return frozen


_DEFAULT: StepConfig | None = None


def resolve_step_config(config: Mapping[str, Any] | None, *, step: str) -> StepConfig:
    """Merge ``config`` over the defaults and check every field."""
    global _DEFAULT
    if not config:
        if _DEFAULT is None:
            _DEFAULT = _resolve({}, step)
        return _DEFAULT
    return _resolve(config, step)


def _resolve(config: Mapping[str, Any], step: str) -> StepConfig:
    where = f"step {step!r}"
    if not isinstance(config, Mapping):
        raise InvalidStepConfigError(f"{where}: config must be a dict, got {type(config).__name__}")
    unknown = set(config) - {"retries", "timeout", "sensitive"}
    if unknown:
        raise InvalidStepConfigError(
            f"{where}: unknown config key(s) {sorted(unknown)}; allowed: 'retries', 'timeout', "
            "'sensitive'"
        )
    sensitive = config.get("sensitive")
    if sensitive is not None and sensitive != "output":
        raise InvalidStepConfigError(
            f"{where}: config 'sensitive' must be 'output' (the step's output is then shown "
            f"as {REDACTED!r} everywhere), got {sensitive!r}"
        )
    retries_in = config.get("retries", {})
    if not isinstance(retries_in, Mapping):
        raise InvalidStepConfigError(
            f"{where}: config 'retries' must be a dict, got {retries_in!r}"
        )
    unknown = set(retries_in) - {"limit", "delay", "backoff"}
    if unknown:
        raise InvalidStepConfigError(
            f"{where}: unknown retries key(s) {sorted(unknown)}; allowed: 'limit', 'delay', 'backoff'"
        )
    retries: dict[str, Any] = {**DEFAULT_CONFIG["retries"], **retries_in}
    limit = retries["limit"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidStepConfigError(f"{where}: retries.limit {limit!r} must be an integer >= 0")
    if retries["backoff"] not in ("constant", "linear", "exponential"):
        raise InvalidStepConfigError(
            f"{where}: retries.backoff {retries['backoff']!r} must be 'constant', 'linear' or 'exponential'"
        )
    dynamic = callable(retries["delay"]) or retries["delay"] == DYNAMIC_DELAY
    if dynamic:
        retries["delay"] = DYNAMIC_DELAY
        delay_ms = 0
    else:
        delay_ms = parse_duration(retries["delay"], what=f"{where}: retries.delay")
    timeout = config.get("timeout", DEFAULT_CONFIG["timeout"])
    timeout_ms = parse_duration(timeout, what=f"{where}: timeout")
    if timeout_ms <= 0:
        raise InvalidStepConfigError(f"{where}: timeout {timeout!r} must be longer than 0 ms")
    raw: dict[str, Any] = {"retries": retries, "timeout": timeout}
    if sensitive is not None:
        raw["sensitive"] = sensitive
    return StepConfig(
        RetryPolicy(limit, delay_ms, cast(Backoff, retries["backoff"]), dynamic), timeout_ms, raw
    )


def config_from_frozen(frozen: Mapping[str, Any]) -> StepConfig:
    """Rebuild the config a step froze in the journal on its first attempt."""
    return resolve_step_config(frozen, step="(journaled)")
