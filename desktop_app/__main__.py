"""``python -m desktop_app``: the same as the ``rill`` command."""

import sys

from desktop_app.launch import main

sys.exit(main())
