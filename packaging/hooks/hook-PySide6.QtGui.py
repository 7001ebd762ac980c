"""PyInstaller hook for PySide6.QtGui: PyInstaller's own, less the plugins Rill leaves out.

QtGui's hook brings every Qt plugin folder tied to QtGui. Dropping the unwanted plugins
here, before PyInstaller follows their shared-library dependencies, also keeps out what only
they need (the GTK 3 theme's GTK, cairo and pango, say). ``rill_bundle.keep`` decides.
"""

import sys
from pathlib import Path

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rill_bundle

hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [(src, dest) for src, dest in binaries if rill_bundle.keep(f"{dest}/{Path(src).name}")]
datas = [(src, dest) for src, dest in datas if rill_bundle.keep(f"{dest}/{Path(src).name}")]
