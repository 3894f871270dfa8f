"""A dark Fusion theme: video apps read best on a dark frame."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    p = QPalette()
    base, window, text = QColor(30, 31, 36), QColor(40, 42, 48), QColor(228, 230, 235)
    p.setColor(QPalette.Window, window)
    p.setColor(QPalette.WindowText, text)
    p.setColor(QPalette.Base, base)
    p.setColor(QPalette.AlternateBase, window)
    p.setColor(QPalette.ToolTipBase, QColor(55, 58, 66))
    p.setColor(QPalette.ToolTipText, text)
    p.setColor(QPalette.Text, text)
    p.setColor(QPalette.Button, QColor(50, 53, 60))
    p.setColor(QPalette.ButtonText, text)
    p.setColor(QPalette.BrightText, QColor(255, 90, 90))
    p.setColor(QPalette.Highlight, QColor(61, 122, 214))
    p.setColor(QPalette.HighlightedText, QColor(255, 255, 255))
    p.setColor(QPalette.Link, QColor(120, 170, 255))
    p.setColor(QPalette.PlaceholderText, QColor(130, 134, 145))
    p.setColor(QPalette.Mid, QColor(120, 124, 135))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, QColor(120, 122, 130))
    app.setPalette(p)
    icon = app_icon()
    if not icon.isNull():
        app.setWindowIcon(icon)


def app_icon() -> QIcon:
    path = RESOURCES / "icon.png"
    return QIcon(str(path)) if path.exists() else QIcon()
