"""``pyodide`` as a dispatcher imports it under dynwf: only ``pyodide.ffi`` is provided.

A package to the import system (``__path__``), so ``import pyodide.ffi`` finds
``dynwf.compat.pyodide_ffi`` through dynwf's import hook.
"""

__path__: list[str] = []
