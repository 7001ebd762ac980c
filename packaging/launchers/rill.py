"""The frozen ``rill`` executable: the desktop window (``desktop_app.launch.main``), or, with
``--typeset-math``, the process that typesets formulas for it (no Qt is loaded then)."""

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["--typeset-math"]:
    from desktop_app.ui.math_text import main as typeset

    sys.exit(typeset())

from desktop_app.launch import main

if __name__ == "__main__":
    sys.exit(main())
