"""``python -m vcam`` is the ``vcam`` command."""

from vcam.cli import main

raise SystemExit(main())
