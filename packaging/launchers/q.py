"""The frozen ``q`` executable: the terminal command (``desktop_app.cli.main``)."""

import sys

from desktop_app.cli import main

if __name__ == "__main__":
    sys.exit(main())
