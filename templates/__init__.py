"""Templates for ``dynwf init``, installed as the package ``dynwf._templates``.

``project/`` is a whole platform project, ``tenant/`` what ``dynwf init --tenant``
adds. In paths and text, ``__project__``, ``__tenant__`` and ``__tenant_module__``
are replaced when a project is made.
"""
