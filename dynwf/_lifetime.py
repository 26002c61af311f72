"""A child process that must not outlive its parent: ``die_with_parent``.

Used by every process dynwf starts that would otherwise run on unseen after its parent
is killed outright: a ``dynwf run`` engine (parent: the supervisor), the isolates'
template process (parent: the engine) and each isolate (parent: the template).
"""

from __future__ import annotations

import os
import signal
import sys


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when ``parent`` dies (Linux; elsewhere nothing).

    ``PR_SET_PDEATHSIG`` fires when the parent exits; a parent that died before the
    request took effect is seen as a changed parent PID, and this process exits now.
    A process stuck in a CPU loop never reads the EOF on its pipe, which is why the
    kernel has to do it.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
