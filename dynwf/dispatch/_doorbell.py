"""A page of memory shared by the engine and one isolate, so that a side expecting the
other's next message soon may spin for it instead of sleeping in the kernel.

An isolated step is a round trip: the isolate asks to run an attempt, the engine
commits the attempt fact and answers, the callback runs, and the isolate sends the
result with its next request. Each message wakes a process that went to sleep in
``epoll_wait``; on a VM that is an interrupt to a halted vCPU, tens of microseconds
each way, and the woken process then runs with cold caches (bench/README.md). A side
that expects an answer within a known bound therefore spins on this page first.

Each side counts the writes it makes to the message socket in its own word
(``ring()`` after each write). Before it writes, a side takes the other's count
(``mark()``); ``wait(mark, budget)`` then reads memory, without a system call, until
that count moves or the budget is spent, and returns to the event loop, which finds the
message already readable or sleeps as before. The engine also writes a hint word: 1
while a spinning isolate costs nobody anything (one pass running), else 0.

Only counters live here, never data: a tenant that scribbles on the page can make its
own isolate spin less, or the engine spin up to its (small) budget, nothing else.
"""

from __future__ import annotations

import mmap
import os
import time
from typing import Literal

Side = Literal["engine", "isolate"]
_WORDS = ("engine", "isolate", "hint")  # native uint32 words, in this order
_SIZE = 4 * len(_WORDS)


class Doorbell:
    """One side's view of the shared page."""

    def __init__(self, page: mmap.mmap, side: Side) -> None:
        self._page = page
        self._words = memoryview(page).cast("I")
        self._mine = _WORDS.index(side)
        self._peer = 1 - self._mine
        self._hint = _WORDS.index("hint")

    @classmethod
    def create(cls) -> tuple[Doorbell, int] | None:
        """The engine's side and a file descriptor for the isolate's; None without memfd."""
        if not hasattr(os, "memfd_create"):  # Linux only; elsewhere nobody spins
            return None
        fd = os.memfd_create("dynwf-doorbell")
        try:
            os.ftruncate(fd, _SIZE)
            return cls(mmap.mmap(fd, _SIZE), "engine"), fd
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd: int) -> Doorbell:
        """The isolate's side, from the descriptor the engine passed it (closed here)."""
        try:
            return cls(mmap.mmap(fd, _SIZE), "isolate")
        finally:
            os.close(fd)

    def ring(self) -> None:
        """Count one more write to the socket (call it after the write)."""
        self._words[self._mine] = (self._words[self._mine] + 1) & 0xFFFFFFFF

    def mark(self) -> int:
        """The other side's count of writes so far."""
        return int(self._words[self._peer])

    def wait(self, mark: int, budget_s: float) -> bool:
        """Spin until the other side writes after ``mark``, for at most ``budget_s``."""
        words, peer = self._words, self._peer
        if words[peer] != mark:
            return True
        end = time.perf_counter() + budget_s
        while words[peer] == mark:
            if time.perf_counter() > end:
                return False
        return True

    @property
    def hint(self) -> bool:
        """The engine's word: may the isolate spin for its answers now?"""
        return bool(self._words[self._hint])

    @hint.setter
    def hint(self, value: bool) -> None:
        self._words[self._hint] = int(value)

    def close(self) -> None:
        self._words.release()
        self._page.close()
