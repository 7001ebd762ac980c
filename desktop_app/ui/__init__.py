"""The Rill window: PySide6 widgets and the one Qt-facing controller. No HTTP here."""
