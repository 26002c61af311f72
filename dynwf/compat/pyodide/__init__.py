"""``pyodide`` as a dispatcher imports it under dynwf: only ``pyodide.ffi`` is provided."""
