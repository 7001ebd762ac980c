"""Colours for light and dark mode, and applying them to the application.

Rill uses the Fusion style with its own palette, so the window looks the same on every
platform and the configured theme (system, light or dark) is honoured even where the
platform cannot switch schemes itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

Mode = Literal["light", "dark"]


@dataclass(frozen=True, slots=True)
class Theme:
    """The colours one mode uses, as ``#rrggbb`` strings."""

    mode: Mode
    window: str
    base: str
    alt_base: str
    text: str
    muted: str
    border: str
    accent: str
    accent_text: str
    user_bg: str
    assistant_bg: str
    code_bg: str
    code_header: str
    inline_code_bg: str
    link: str
    error: str
    error_bg: str
    warning_bg: str
    warning_text: str
    success: str
    stop: str
    kw: str
    string: str
    comment: str
    number: str
    func: str


LIGHT = Theme(
    mode="light",
    window="#f4f5f7",
    base="#ffffff",
    alt_base="#eef0f3",
    text="#1d1f23",
    muted="#5f6670",
    border="#d5d9df",
    accent="#2563eb",
    accent_text="#ffffff",
    user_bg="#e8effc",
    assistant_bg="#ffffff",
    code_bg="#f3f4f6",
    code_header="#e5e7eb",
    inline_code_bg="#eceef1",
    link="#1d4ed8",
    error="#b42318",
    error_bg="#fdecea",
    warning_bg="#fff4d6",
    warning_text="#6b4e00",
    success="#147a3d",
    stop="#c62828",
    kw="#8a2be2",
    string="#0a7d32",
    comment="#6a737d",
    number="#b35900",
    func="#005cc5",
)

DARK = Theme(
    mode="dark",
    window="#1b1d21",
    base="#23262b",
    alt_base="#2b2f35",
    text="#e6e8eb",
    muted="#9aa1ab",
    border="#3a3f46",
    accent="#4f8df7",
    accent_text="#ffffff",
    user_bg="#263246",
    assistant_bg="#23262b",
    code_bg="#16181c",
    code_header="#2d3138",
    inline_code_bg="#33373e",
    link="#8ab4ff",
    error="#ff8a80",
    error_bg="#3b2224",
    warning_bg="#3d3420",
    warning_text="#f5d68a",
    success="#6fd08c",
    stop="#b3261e",
    kw="#c792ea",
    string="#a5d6a7",
    comment="#7f8792",
    number="#f7b267",
    func="#82aaff",
)

_current: Theme = LIGHT


def current() -> Theme:
    """The theme in use now."""
    return _current


def resolve(setting: str) -> Mode:
    """The mode for a ``ui.theme`` setting: ``system`` follows the platform's scheme."""
    if setting in ("light", "dark"):
        return setting  # type: ignore[return-value]
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        scheme = app.styleHints().colorScheme()
        if scheme == Qt.ColorScheme.Dark:
            return "dark"
    return "light"


def palette_for(theme: Theme) -> QPalette:
    """A complete QPalette for ``theme``."""
    p = QPalette()
    c = QColor
    roles = {
        QPalette.ColorRole.Window: theme.window,
        QPalette.ColorRole.WindowText: theme.text,
        QPalette.ColorRole.Base: theme.base,
        QPalette.ColorRole.AlternateBase: theme.alt_base,
        QPalette.ColorRole.ToolTipBase: theme.base,
        QPalette.ColorRole.ToolTipText: theme.text,
        QPalette.ColorRole.PlaceholderText: theme.muted,
        QPalette.ColorRole.Text: theme.text,
        QPalette.ColorRole.Button: theme.alt_base,
        QPalette.ColorRole.ButtonText: theme.text,
        QPalette.ColorRole.BrightText: theme.error,
        QPalette.ColorRole.Highlight: theme.accent,
        QPalette.ColorRole.HighlightedText: theme.accent_text,
        QPalette.ColorRole.Link: theme.link,
        QPalette.ColorRole.LinkVisited: theme.link,
        QPalette.ColorRole.Mid: theme.border,
        QPalette.ColorRole.Midlight: theme.border,
        QPalette.ColorRole.Dark: theme.border,
        QPalette.ColorRole.Light: theme.base,
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, colour in roles.items():
        p.setColor(role, c(colour))
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, c(theme.muted))
    return p


def stylesheet(theme: Theme) -> str:
    """The application style sheet: message cards, banner, code and small labels."""
    t = theme
    return f"""
QFrame#messageCard[role="user"] {{
    background: {t.user_bg}; border: 1px solid {t.border}; border-radius: 10px;
}}
QFrame#messageCard[role="assistant"] {{
    background: {t.assistant_bg}; border: 1px solid {t.border}; border-radius: 10px;
}}
QFrame#welcomeCard {{
    background: {t.base}; border: 1px solid {t.border}; border-radius: 12px;
}}
QLabel#roleLabel {{ font-weight: 600; }}
QLabel#muted, QLabel#details {{ color: {t.muted}; }}
QLabel#badge {{
    border-radius: 8px; padding: 1px 8px; color: {t.muted}; background: {t.alt_base};
}}
QLabel#badge[state="streaming"] {{ color: {t.accent}; }}
QLabel#badge[state="failed"], QLabel#badge[state="interrupted"] {{
    color: {t.error}; background: {t.error_bg};
}}
QLabel#badge[state="cancelled"] {{ color: {t.warning_text}; background: {t.warning_bg}; }}
QLabel#badge[state="cache"] {{ color: {t.success}; }}
QLabel#errorText {{ color: {t.error}; }}
QLabel#noticeText {{ color: {t.warning_text}; }}
QFrame#retryBanner {{
    background: {t.warning_bg}; border: 1px solid {t.border}; border-radius: 8px;
}}
QFrame#retryBanner QLabel {{ color: {t.warning_text}; }}
QLabel#composerWarning {{ color: {t.error}; }}
QPushButton#jumpButton {{
    background: {t.accent}; color: {t.accent_text}; border: none; border-radius: 14px;
    padding: 6px 14px;
}}
QPushButton#sendButton {{
    background: {t.accent}; color: {t.accent_text}; border: none; border-radius: 6px;
    padding: 6px 16px; font-weight: 600;
}}
QPushButton#sendButton:disabled {{ background: {t.border}; color: {t.muted}; }}
QPushButton#stopButton {{
    background: {t.stop}; color: #ffffff; border: none; border-radius: 6px;
    padding: 6px 16px; font-weight: 600;
}}
QToolButton#msgTool {{ border: none; padding: 2px 6px; color: {t.muted}; }}
QToolButton#msgTool:hover {{ color: {t.text}; background: {t.alt_base}; border-radius: 4px; }}
QProgressBar#tokenBar {{
    border: none; background: {t.alt_base}; border-radius: 2px; max-height: 4px;
}}
QProgressBar#tokenBar::chunk {{ background: {t.accent}; border-radius: 2px; }}
QListWidget#conversationList {{ border: none; background: {t.window}; }}
QListWidget#conversationList::item {{ padding: 6px 8px; border-radius: 6px; }}
QListWidget#conversationList::item:selected {{ background: {t.user_bg}; color: {t.text}; }}
QScrollArea#chatScroll {{ border: none; background: {t.window}; }}
QWidget#chatColumn {{ background: {t.window}; }}
"""


def apply(app: QApplication, setting: str) -> Theme:
    """Apply the ``ui.theme`` setting to ``app``; return the theme now in use."""
    global _current
    theme = DARK if resolve(setting) == "dark" else LIGHT
    _current = theme
    if app.style().name().lower() != "fusion":
        style = QStyleFactory.create("Fusion")
        if style is not None:
            app.setStyle(style)
    app.setPalette(palette_for(theme))
    app.setStyleSheet(stylesheet(theme))
    from desktop_app.ui import icons

    icons.refresh()
    return theme
