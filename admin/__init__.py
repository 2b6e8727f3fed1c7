"""The operator's tools: ``telemetry-admin`` (cli), the status view, migrate, archive, imports, layers.

Imports ``writer`` and ``common``, never ``producers`` (``python -m admin.layers`` checks). The
modules the writer also uses at run time (dead letters, partitions, stream status and IDs,
retention) stay in ``writer/`` and are imported from there. The ``run`` verbs (issue 17) are in
run_cli.py and run_views.py; their work is in the ``runs`` package.
"""
