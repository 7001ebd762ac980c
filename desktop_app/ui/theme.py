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
    sidebar: str
    hover: str
    accent_hover: str


LIGHT = Theme(
    mode="light",
    window="#ffffff",
    base="#ffffff",
    alt_base="#f2f3f5",
    text="#1f2328",
    muted="#646b75",
    border="#dfe2e6",
    accent="#2563eb",
    accent_text="#ffffff",
    user_bg="#eaf0fb",
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
    sidebar="#f7f7f8",
    hover="#ebedf0",
    accent_hover="#1d4ed8",
)

DARK = Theme(
    mode="dark",
    window="#1e1f22",
    base="#2a2b2f",
    alt_base="#2a2b2f",
    text="#e7e8ea",
    muted="#9ca1a9",
    border="#3a3c41",
    accent="#4f8df7",
    accent_text="#ffffff",
    user_bg="#2c3546",
    assistant_bg="#1e1f22",
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
    sidebar="#17181a",
    hover="#33353a",
    accent_hover="#6b9ff8",
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
QFrame#userBubble {{ background: {t.user_bg}; border: none; border-radius: 12px; }}
QFrame#welcomeCard {{
    background: {t.base}; border: 1px solid {t.border}; border-radius: 12px;
}}
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
QWidget#chatHeader {{ background: {t.window}; }}
QToolButton#modelPicker {{
    border: none; border-radius: 8px; padding: 4px 8px; font-weight: 600; color: {t.text};
    font-size: 11pt;
}}
QToolButton#modelPicker:hover, QToolButton#modelPicker:focus {{ background: {t.hover}; }}
QToolButton#headerTool {{ border: none; border-radius: 8px; padding: 4px; }}
QToolButton#headerTool:hover, QToolButton#headerTool:focus {{ background: {t.hover}; }}
QFrame#popover {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 8px; }}
QLabel#popoverTitle {{ font-weight: 600; }}
QFrame#composerBox {{
    background: {t.base}; border: 1px solid {t.border}; border-radius: 16px;
}}
QFrame#composerBox[focused="true"] {{ border-color: {t.muted}; }}
QFrame#composerBox[dropping="true"] {{ border: 2px dashed {t.accent}; }}
QPlainTextEdit#promptEdit {{ background: transparent; border: none; }}
QFrame#attachmentChip {{
    background: {t.alt_base}; border: 1px solid {t.border}; border-radius: 10px;
}}
QFrame#attachmentChip:focus {{ border: 2px solid {t.muted}; }}
QLabel#attachmentThumb {{
    background: {t.base}; border-radius: 6px; color: {t.muted}; font-weight: 600;
}}
QToolButton#attachmentRemove {{ border: none; color: {t.muted}; padding: 0 2px; }}
QToolButton#attachButton {{ border: none; border-radius: 16px; }}
QToolButton#attachButton:hover {{ background: {t.hover}; }}
QToolButton#attachButton:focus {{ border: 2px solid {t.muted}; }}
QToolButton#attachmentRemove:hover {{ color: {t.text}; }}
QScrollArea#attachmentScroll, QWidget#attachmentRow {{ background: transparent; }}
QToolButton#sendButton {{ background: {t.accent}; border: none; border-radius: 16px; }}
QToolButton#sendButton:hover {{ background: {t.accent_hover}; }}
QToolButton#sendButton:disabled {{ background: {t.hover}; }}
QToolButton#stopButton {{ background: {t.text}; border: none; border-radius: 16px; }}
QToolButton#sendButton:focus, QToolButton#stopButton:focus {{ border: 2px solid {t.muted}; }}
QPushButton {{
    background: {t.base}; border: 1px solid {t.border}; border-radius: 8px;
    padding: 4px 12px; min-height: 20px;
}}
QPushButton:hover {{ background: {t.hover}; }}
QPushButton:focus {{ border-color: {t.accent}; }}
QPushButton:default {{ background: {t.accent}; color: {t.accent_text}; border-color: {t.accent}; }}
QPushButton:default:hover {{ background: {t.accent_hover}; }}
QPushButton:disabled {{ color: {t.muted}; background: {t.alt_base}; }}
QDialogButtonBox {{ dialogbuttonbox-buttons-have-icons: 0; }}
QToolTip {{
    background: {t.base}; color: {t.text}; border: 1px solid {t.border}; padding: 4px 8px;
}}
QMenu {{ background: {t.base}; border: 1px solid {t.border}; padding: 4px; }}
QMenu::item {{ padding: 4px 24px 4px 12px; border-radius: 4px; }}
QMenu::item:selected {{ background: {t.hover}; color: {t.text}; }}
QMenu::separator {{ height: 1px; background: {t.border}; margin: 4px 8px; }}
QScrollBar:vertical {{ background: transparent; width: 10px; margin: 0; }}
QScrollBar::handle:vertical {{
    background: {t.border}; border-radius: 4px; min-height: 32px; margin: 2px;
}}
QScrollBar::handle:vertical:hover {{ background: {t.muted}; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 0; }}
QScrollBar::handle:horizontal {{
    background: {t.border}; border-radius: 4px; min-width: 32px; margin: 2px;
}}
QScrollBar::handle:horizontal:hover {{ background: {t.muted}; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; border: none; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: none; }}
QToolButton#msgTool {{ border: none; border-radius: 6px; padding: 4px; color: {t.muted}; }}
QToolButton#msgTool:hover, QToolButton#msgTool:focus {{ background: {t.alt_base}; }}
QPushButton#recoverButton {{ padding: 4px 12px; }}
QProgressBar#tokenBar, QProgressBar#autoBar {{
    border: none; background: {t.alt_base}; border-radius: 2px; max-height: 4px;
}}
QProgressBar#tokenBar::chunk, QProgressBar#autoBar::chunk {{
    background: {t.accent}; border-radius: 2px;
}}
QListWidget#conversationList {{ border: none; background: {t.window}; }}
QListWidget#conversationList::item {{ padding: 6px 8px; border-radius: 6px; }}
QListWidget#conversationList::item:selected {{ background: {t.user_bg}; color: {t.text}; }}
QScrollArea#chatScroll {{ border: none; background: {t.window}; }}
QWidget#chatColumn {{ background: {t.window}; }}
QToolButton#sidebarTool {{ border: none; border-radius: 8px; padding: 4px 8px; }}
QToolButton#sidebarTool:hover, QToolButton#sidebarTool:focus {{ background: {t.hover}; }}
QListWidget#conversationList::item:hover:!selected {{ background: {t.hover}; }}
QWidget#sidebarRail {{ background: {t.window}; }}
QSplitter::handle {{ background: {t.border}; }}
QStatusBar {{ background: {t.window}; border-top: 1px solid {t.border}; }}
QStatusBar::item {{ border: none; }}
QStatusBar QLabel, QStatusBar StatusText {{ color: {t.muted}; }}
QStatusBar StatusText[state="error"] {{ color: {t.error}; }}
QFrame#retryBanner {{ border: none; }}
QFrame#toolCard {{
    background: {t.alt_base}; border: 1px solid {t.border}; border-radius: 8px;
}}
QFrame#toolCard[state="error"] {{ background: {t.error_bg}; border-color: {t.error}; }}
QFrame#toolCard[state="approval"] {{ border-color: {t.accent}; }}
QLabel#toolName {{ font-weight: 600; }}
QLabel#toolGlyph, QLabel#toolStatus, QLabel#toolPreview, QLabel#toolSection {{
    color: {t.muted};
}}
QLabel#toolStatus[state="approval"] {{ color: {t.accent}; }}
QLabel#toolStatus[state="done"] {{ color: {t.success}; }}
QLabel#toolStatus[state="error"], QLabel#toolPreview[state="error"] {{ color: {t.error}; }}
QLabel#toolStatus[state="denied"], QLabel#toolStatus[state="stopped"] {{
    color: {t.warning_text};
}}
QPlainTextEdit#toolDetail {{
    background: {t.base}; border: 1px solid {t.border}; border-radius: 6px;
}}
QPushButton#toolAllow {{
    background: {t.accent}; color: {t.accent_text}; border-color: {t.accent};
}}
QPushButton#toolAllow:hover {{ background: {t.accent_hover}; }}
QPushButton#toolAllow:focus {{ border: 2px solid {t.text}; }}
QToolButton#toolsButton {{
    border: 1px solid {t.border}; border-radius: 8px; padding: 4px 10px; color: {t.muted};
}}
QToolButton#toolsButton:hover, QToolButton#toolsButton:focus {{ background: {t.hover}; }}
QLabel#toolState[state="ready"] {{ color: {t.success}; }}
QLabel#toolState[state="failed"] {{ color: {t.error}; }}
QLabel#toolState[state="starting"] {{ color: {t.accent}; }}
QFrame#retryBanner QPushButton {{
    background: transparent; color: {t.warning_text}; border: 1px solid {t.warning_text};
}}
QFrame#retryBanner QPushButton:hover {{ background: {t.hover}; }}
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
