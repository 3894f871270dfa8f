"""The Speak toggle (toolbar and Session menu): it mirrors the speech state, remembers the
choice, and forgets a choice that failed so the next launch does not warn again."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QSignalBlocker, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QStyle, QWidget

from desktop_app.settings import AppSettings
from desktop_app.speech import SpeechController

SPEAK_TIP = "Speak commentary and answers (Ctrl+Shift+M); voice and output in Settings"


class SpeakToggle(QObject):
    """`settings()` -> the window's AppSettings (replaced when Settings are applied); `save()` stores them;
    `show_state(state)` puts the speech state in the status bar; `consent()` is False (and asks) while
    turning on would download the voice without the user's agreement."""

    def __init__(self, window: QWidget, speech: SpeechController, settings: Callable[[], AppSettings],
                 save: Callable[[], None], show_state: Callable[[str], None], consent: Callable[[], bool]):
        super().__init__(window)
        self.window, self.speech = window, speech
        self._settings, self._save, self._show_state, self._consent = settings, save, show_state, consent
        self.action = QAction(window.style().standardIcon(QStyle.SP_MediaVolume), "Spea&k", self)
        self.action.setCheckable(True)
        self.action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.show(settings().speech_enabled)
        self.action.toggled.connect(self.set_enabled)
        speech.state_changed.connect(self.on_state)

    def set_enabled(self, enabled: bool) -> None:
        """Off mutes at once, on loads the voice if needed (after asking before a download); it is remembered."""
        if enabled and not self._consent():
            self.show(False)
            return
        self._remember(enabled)
        self.show(enabled)
        self.speech.set_enabled(enabled)
        self.on_state(self.speech.state)  # a retry that fails at once unchecks the toggle again

    @Slot(str)
    def on_state(self, state: str) -> None:
        if state.startswith("error: "):  # the toggle shows what the status bar says: not speaking
            self.show(False)
            self.action.setToolTip("Speech failed (see the message above the video); click to try again")
            self._remember(False)  # clicking Speak retries
        self._show_state(state)

    def _remember(self, enabled: bool) -> None:
        settings = self._settings()
        if enabled != settings.speech_enabled:
            settings.speech_enabled = enabled
            self._save()

    def show(self, enabled: bool) -> None:
        with QSignalBlocker(self.action):
            self.action.setChecked(enabled)
        self.action.setToolTip(SPEAK_TIP)
        self.action.setIcon(self.window.style().standardIcon(QStyle.SP_MediaVolume if enabled
                                                             else QStyle.SP_MediaVolumeMuted))
