"""``python -m nbflow``: the ``nbflow`` command."""

from nbflow.cli import main

raise SystemExit(main())
