"""Stand-ins for the modules Cloudflare's Python runtime gives a dispatcher: ``js``,
``pyodide.ffi`` and ``dynamic_workflows``, so the same source runs under dynwf.

``dynwf.workers.install()`` routes those imports here in CPython (where the real
ones cannot work: they need Pyodide's JS bridge); under Pyodide it does nothing.
"""
