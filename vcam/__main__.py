"""``python -m vcam`` is the ``vcam`` command."""

from vcam.app.cli import main

raise SystemExit(main())
