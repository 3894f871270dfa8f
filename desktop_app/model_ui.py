"""The model as the user sees it: a question before anything is downloaded (the model, and the
ChatTTS voice), the load's progress, the Model field, and what to do when the load fails."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QSettings, Slot

from desktop_app.controller import AppController
from desktop_app.load_progress import LoadProgress
from desktop_app.message_bar import MessageBar
from desktop_app.model_source import (download_question, needs_download, speech_download_question,
                                      speech_needs_download)
from desktop_app.status_presenter import StatusPresenter
from desktop_app.workers import user_message


class ModelUi(QObject):
    """`model_name()` is the model in force; `load()` and `choose_folder()` are the window's commands."""

    def __init__(self, window, controller: AppController, presenter: StatusPresenter, messages: MessageBar,
                 store: QSettings, model_name: Callable[[], str], load: Callable[[], None],
                 choose_folder: Callable[[], None]):
        super().__init__(window)
        self.presenter, self.messages, self.store = presenter, messages, store
        self._model_name, self._load, self._choose_folder = model_name, load, choose_folder
        self.progress = LoadProgress(window)
        controller.loading.connect(self._on_loading)
        controller.load_progress.connect(self.progress.update)
        controller.model_loaded.connect(self._on_loaded)
        controller.model_failed.connect(self._on_failed)
        controller.model_dropped.connect(self.progress.close)

    def wanted(self) -> bool:
        """False (and a question on screen) while the model would be downloaded without consent."""
        name = self._model_name()
        if not needs_download(name) or self.store.value("model/download_ok", "") == name:
            return True
        self.presenter.model_missing("not downloaded")
        self.messages.show_message(download_question(name), "info", key="model", actions=[
            ("Download", self._agree_to_download),
            ("Choose local folder…", self._choose_folder),
        ])
        return False

    def speech_wanted(self, voice: str, agreed: Callable[[], None], use_espeak: Callable[[], None]) -> bool:
        """False (and a question on screen) while Speak would download ChatTTS without consent."""
        if self.store.value("speech/download_ok", "") == "1" or not speech_needs_download(voice):
            return True
        self.messages.show_message(speech_download_question(), "info", key="speech", actions=[
            ("Download", lambda: self._agree_to_speech(agreed)),
            ("Use espeak-ng", lambda: (self.messages.dismiss("speech"), use_espeak())),
        ])
        return False

    def _agree_to_speech(self, agreed: Callable[[], None]) -> None:
        self.store.setValue("speech/download_ok", "1")
        self.store.sync()
        self.messages.dismiss("speech")
        agreed()

    def _agree_to_download(self) -> None:
        self.store.setValue("model/download_ok", self._model_name())
        self.store.sync()
        self.messages.dismiss("model")
        self._load()

    @Slot(str, str)
    def _on_loading(self, name: str, precision: str) -> None:
        self.presenter.model_loading(name, precision)
        self.progress.show(self.presenter.fields["model"].text()[len("Model: "):].capitalize())

    @Slot(object)
    def _on_loaded(self, loaded) -> None:
        self.progress.close()
        self.presenter.model_loaded(loaded)
        self.messages.dismiss("model")
        self.messages.dismiss("start")

    @Slot(object)
    def _on_failed(self, exc) -> None:
        self.progress.close()
        self.messages.dismiss("start")  # "... starts when it is ready": no longer
        self.presenter.model_missing()
        text = user_message(exc)
        remote = getattr(exc, "code", "").startswith("server-")  # Settings > Engine names the fix
        folder = [] if remote else [("Choose local folder…", self._choose_folder)]
        self.messages.show_message(text, "error", key="model", actions=[*folder, ("Retry", self._load)])
        self.presenter.message(text, 10000)
