"""The main window: it builds the widgets and wires them to the AppController (the state, the
model and the runs) and the StatusPresenter (the status bar). The engine runs in a LiveRun's
thread; its events arrive as queued signals carrying the engine's dataclasses.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QSplitter, QStyle, QVBoxLayout, QWidget

from desktop_app.controller import AppController, State
from desktop_app.live_run import STOP_TIMEOUT_S
from desktop_app.file_dialogs import FileDialogs
from desktop_app.help_menu import HelpMenu
from desktop_app.message_bar import MessageBar
from desktop_app.model_ui import ModelUi
from desktop_app.moment_preview import MomentLinks
from desktop_app.narration import Narration, NarrationController
from desktop_app.panels import InputsPanel, TranscriptPanel
from desktop_app.playback import PlaybackBar, PlaybackController
from desktop_app.recent import RecentFiles
from desktop_app.remote_run import EngineChoice, engine_key, remote_config
from desktop_app.session_keeper import SessionKeeper
from desktop_app.session_view import SessionView
from desktop_app.settings import AppSettings
from desktop_app.settings_dialog import edit_settings
from desktop_app.source_picker import SourceSpec
from desktop_app.source_toolbar import SourceToolbar
from desktop_app.speak_toggle import SpeakToggle
from desktop_app.speech import SpeechConfig, SpeechController
from desktop_app.status_presenter import StatusPresenter
from desktop_app.video_view import VideoView
from desktop_app.viewing import ViewController
from desktop_app.workers import BackgroundTask
from engine import list_monitors, list_webcams
from engine.defaults import min_pixels_for
from engine.errors import LiveCCError

log = logging.getLogger(__name__)
APP_NAME = "LiveCC Desktop"
ASK_TIPS = {  # why Ask is enabled or not, by state
    State.RUNNING: "Ask about what the model has seen (Enter in the Question box)",
    State.LOADING_MODEL: "The model is loading: ask once a source plays",
    State.NARRATING: "A narration has the model: ask when it has ended",
    None: "Start a source first: questions are answered from what the model has seen",
}


def confirm_restart(window) -> bool:
    """Start after a run asks first: it clears the transcript (the session file keeps it)."""
    if not window.transcript.entries:
        return True
    answer = QMessageBox.question(window, "Start again?", "Starting again clears the transcript in the window. "
                                  "It stays in the session file; File > Save transcript keeps a copy.",
                                  QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Ok


OPEN_FIXES = {"missing": "open a video with File > Open or drop one on the window",
              "folder": "open a video file (a model folder is chosen in Settings > Model)"}


def video_problem(path: str) -> str | None:
    """Why `path` cannot be played (one line naming the fix), or None: checked before it joins the
    source list and the recent files. Only a regular file is probed: a pipe or a device (which
    `livecc narrate` may read) would block the window, or be drained by the probe."""
    from engine.capture.sources import probe_video

    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, a name too long: probe_video words those
        mode = stat.S_IFREG
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return f"{path} is not a regular file (a device, a pipe or a socket); {OPEN_FIXES['missing']}"
    try:
        probe_video(path)
    except LiveCCError as exc:
        return exc.worded(OPEN_FIXES)
    except OSError as exc:  # a folder on its way that cannot be entered
        return f"Cannot open {path}: {exc.strerror or exc}; check its folder's permissions"
    return None


def default_sessions_dir() -> Path:
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or Path.home() / ".livecc") / "sessions"


class MainWindow(QMainWindow):
    def __init__(self, store: QSettings, model_override: str | None = None, sessions_dir: Path | None = None,
                 session_factory: Callable | None = None, autoload: bool = True, probe_devices: bool = True):
        super().__init__()
        self.store = store
        self.settings = AppSettings.load(store)
        self.model_override = model_override
        self.sessions_dir = Path(sessions_dir) if sessions_dir else default_sessions_dir()
        self.recent = RecentFiles(store)
        self._tasks: list[BackgroundTask] = []
        self.dialogs = FileDialogs(self, store)
        self.presenter = StatusPresenter(self.statusBar())
        self.engine = EngineChoice(lambda: self.settings, lambda: self.model_name, self.presenter, lambda: self.run, self)
        self.controller = AppController(self.engine.model_choice, self._session_config, session_factory,
                                        consent=self._model_wanted, loader=self.engine.loader, parent=self)
        self.status = self.status_fields = self.presenter.fields  # status["lag"] is the lag field's QLabel
        self.message_bar = MessageBar()
        self.model_ui = ModelUi(self, self.controller, self.presenter, self.message_bar, store,
                                lambda: self.model_name, self.load_model, self.choose_model_folder)
        self.speech = SpeechController(parent=self)  # off until the settings (and a download) allow it
        self.speak = SpeakToggle(self, self.speech, lambda: self.settings, lambda: self.settings.save(self.store),
                                 self._show_speech_state, self._speech_allowed)
        self.speech.configure(self._speech_config())
        self.speak.show(self.speech.config.enabled)
        self.speak_action = self.speak.action
        self.speak.on_state(self.speech.state)

        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.resize(1280, 760)
        self._build_actions()
        self._build_toolbar()
        self._build_central()
        self._build_menus()
        self._wire()
        self.picker.set_recent(self.recent.paths())  # the source list offers recent files too
        self.picker.set_region(self.settings.region())  # the region chosen last time
        self._preview_choice()
        self._restore_geometry()
        self._update_controls()
        if probe_devices:
            self.refresh_devices()
        if autoload and self._model_wanted():
            self.load_model()

    # what the rest of the app and the tests read
    loaded = property(lambda self: self.controller.loaded)
    run = property(lambda self: self.controller.run)
    loader = property(lambda self: self.controller.loader)
    transcript = property(lambda self: self.keeper.transcript)
    session_log = property(lambda self: self.keeper.recorder)

    def _action(self, text: str, slot, shortcut=None, icon=None) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open video…", self.choose_file, QKeySequence.Open, QStyle.SP_DialogOpenButton)
        self.save_action = self._action("&Save transcript…", self.choose_save_transcript, QKeySequence.Save,
                                        QStyle.SP_DialogSaveButton)
        self.sessions_action = self._action("Open session &folder", lambda: QDesktopServices.openUrl(
            QUrl.fromLocalFile(str(self.sessions_dir))))
        self.settings_action = self._action("Se&ttings…", self.open_settings, "Ctrl+,", QStyle.SP_FileDialogDetailedView)
        self.quit_action = self._action("&Quit", self.close, QKeySequence.Quit)
        # Space starts and stops; line edits take Space for typing (they accept ShortcutOverride)
        self.toggle_action = self._action("&Start", self.toggle_run, Qt.Key_Space)
        self.ask_action = self._action("&Ask a question", lambda: self.question_edit.setFocus(Qt.ShortcutFocusReason),
                                       "Ctrl+L")
        self.narrator = NarrationController(self, self.controller.narration_blocker,
                                            lambda path: Narration(path, self.loaded, self._session_config(None)),
                                            self.dialogs.open_video)
        self.narrator.notice.connect(lambda text, level: self.show_error(text, level, key="narrate"))
        self.controller.attach_narrator(self.narrator)
        self.recent_menu_title = "Open &recent"
        self.clear_action = self._action("&Clear transcript", self.clear_transcript)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu(self.recent_menu_title)
        self.recent_menu.aboutToShow.connect(lambda: self.recent.fill_menu(self.recent_menu, self.open_file))
        for action in (self.narrator.action, self.save_action, self.sessions_action, None, self.quit_action):
            file_menu.addAction(action) if action else file_menu.addSeparator()
        session_menu = bar.addMenu("&Session")
        for action in (self.toggle_action, self.playback.pause_action, self.playback.back_action,
                       self.playback.forward_action, None, self.ask_action, self.clear_action, self.speak_action,
                       None, self.settings_action):
            session_menu.addAction(action) if action else session_menu.addSeparator()
        view_menu = bar.addMenu("&View")
        for action in self.viewing.actions():
            view_menu.addAction(action) if action else view_menu.addSeparator()
        self.help = HelpMenu(self, bar, [file_menu, session_menu, view_menu], lambda: (self.model_name, self.loaded))
        self.viewing.chrome.append(bar)
        for action in (*self.viewing.actions(), self.playback.pause_action, self.playback.back_action,
                       self.playback.forward_action, self.ask_action, self.help.shortcuts_action):
            if action is not None:
                self.addAction(action)  # shortcuts work in fullscreen too, with the menu bar hidden

    def _build_toolbar(self) -> None:
        self.toolbar = SourceToolbar([self.open_action, self.save_action, self.speak_action, self.settings_action])
        self.addToolBar(self.toolbar)
        self.picker, self.start_button = self.toolbar.picker, self.toolbar.start_button
        self.picker.open_file_requested.connect(self.choose_file)
        self.picker.changed.connect(self._update_controls)
        self.picker.activated.connect(self._preview_choice)
        self.picker.region_chosen.connect(self._remember_region)
        self.start_button.clicked.connect(self.toggle_run)

    def _build_central(self) -> None:
        self.video_view = VideoView()
        self.video_view.setFocusPolicy(Qt.StrongFocus)  # clicking the video takes focus out of text fields
        self.playback_bar = PlaybackBar()
        self.playback = PlaybackController(self.playback_bar, lambda: self.video_view.frame_time, self,
                                           pause=self.controller.set_paused)
        self.inputs = InputsPanel(self.settings.instruction)
        self.instruction_edit, self.question_edit = self.inputs.instruction_edit, self.inputs.question_edit
        self.ask_button = self.inputs.ask_button
        self.instruction_edit.returnPressed.connect(self.apply_instruction)
        self.question_edit.returnPressed.connect(self.ask_question)
        self.ask_button.clicked.connect(self.ask_question)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(8, 8, 4, 8)
        for widget, stretch in ((self.message_bar, 0), (self.video_view, 1), (self.playback_bar, 0),
                                (self.inputs, 0)):
            lv.addWidget(widget, stretch)
        right = TranscriptPanel(self.sessions_dir)
        self.transcript_view, self.session_label = right.view, right.session_label
        self.keeper = SessionKeeper(self.sessions_dir, right.show_session_path,
                                    lambda text: self.show_error(text, "warning", key="session"))
        self.moments = MomentLinks(self, lambda: self.keeper.source)  # a preview, never a seek: it would end
        self.transcript_view.moment_clicked.connect(self.moments.open)  # the conversation the answer came from
        self.transcript_view.moment_tip = self.moments.tip
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([780, 500])
        self.setCentralWidget(self.splitter)
        self.left_panel = left
        self.viewing = ViewController(self, self.video_view, [right, self.inputs, self.playback_bar, self.message_bar,
                                                              self.toolbar, self.statusBar()], self.store)

    def _wire(self) -> None:
        c = self.controller
        c.state_changed.connect(self._on_state)
        c.busy_changed.connect(self._update_controls)
        self.session_view = SessionView(self.keeper, self.transcript_view, self.video_view, self.playback, self.speech,
                                        self.presenter, self.message_bar, self._set_title, self)
        c.run_started.connect(lambda run: self.session_view.begin(run, self.loaded.name, self.instruction_edit.text()))
        c.run_ended.connect(self.session_view.end)
        c.event.connect(self.session_view.on_event)
        c.run_failed.connect(self.session_view.on_error)
        c.notice.connect(lambda text, level, key: self.show_error(text, level, key=key))
        c.status.connect(self.presenter.message)
        self.speech.voice_lag_changed.connect(self.presenter.voice_lag)
        self.speech.message.connect(lambda text, level, details: self.show_error(text, level, key="speech",
                                                                                 details=details))

    @property
    def model_name(self) -> str:
        return self.model_override or self.settings.model

    def _model_wanted(self) -> bool:
        """False while a model to download waits for consent (a server needs none)."""
        return self.engine.server or self.model_ui.wanted()

    def load_model(self) -> None:
        """Load the chosen model (with the chosen precision); while the model is busy, once it is free."""
        why = self.controller.load_model()
        if why:
            self.presenter.message(f"The new model loads when the current one is free ({why})", 6000)

    def choose_model_folder(self) -> None:
        folder = self.dialogs.model_folder()
        if folder:
            self.set_model(folder)

    def set_model(self, name: str) -> None:
        """Use (and remember) another model; it loads now and serves the next Start."""
        self.model_override = None
        self.settings.model = name
        self.settings.save(self.store)
        self.load_model()

    def refresh_devices(self) -> None:
        task = BackgroundTask(lambda _report: (list_webcams(), list_monitors()), name="livecc-devices", parent=self)
        task.succeeded.connect(lambda found: self.picker.set_devices(*found))
        task.failed.connect(lambda exc: log.warning("device probe failed: %s", exc))
        self._tasks.append(task)
        task.start()

    def choose_file(self) -> None:
        path = self.dialogs.open_video()
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> None:
        """Select a video file and play it (File > Open, drag and drop, the command line, recent files);
        a transcript in the window is only cleared once the user agrees, as Start asks."""
        problem = video_problem(path)
        if problem:
            self.show_error(problem, key="start")
            return
        if not confirm_restart(self):
            return
        self.recent.add(path)
        spec = self.picker.add_file(path)
        if self.loaded is None:
            self.video_view.show_preview(path)  # the user sees the file while the model is not there
        self.start_source(spec)

    def _remember_region(self, region) -> None:
        self.settings.screen_region = ",".join(map(str, region)) if region else ""
        self.settings.save(self.store)

    def _preview_choice(self) -> None:
        """A file chosen in the Source list (a recent one at start-up too) shows its first frame."""
        spec = self.picker.current_spec()
        if self.run is None and spec is not None and spec.kind == "file":
            self.video_view.show_preview(spec.path)

    def toggle_run(self) -> None:
        if self.run is not None:
            self.stop()
            return
        if self.controller.cancel_start():  # it said "Waiting for model…": the file no longer starts by itself
            return
        spec = self.picker.current_spec()
        if spec is None:
            self.choose_file()
        elif confirm_restart(self):
            self.start_source(spec)

    def start_source(self, spec: SourceSpec) -> None:
        """Start watching `spec`; waits (without blocking) for the model or a stopping run."""
        self.picker.select(spec)
        self.controller.start(spec)
        self._update_controls()

    def _session_config(self, spec: SourceSpec | None):
        s = self.settings
        if self.engine.server:
            return remote_config(s, self.instruction_edit.text().strip() or s.instruction)
        from engine import SessionConfig

        return SessionConfig(query=self.instruction_edit.text().strip() or s.instruction,
                             max_new_tokens=s.max_new_tokens, repetition_penalty=s.repetition_penalty,
                             max_pixels=s.max_pixels, min_pixels=min_pixels_for(s.max_pixels),
                             live=True, memory=s.memory)  # the app shows video in real time: commentary must keep up

    def stop(self) -> None:
        """Ask the run to stop; the controller says when its thread has ended."""
        self.controller.stop()

    @Slot(object)
    def _on_state(self, state: State) -> None:
        if state is State.STOPPING:
            self.speech.end_run(silence=True)
        self._update_controls()

    def ask_question(self) -> None:
        question = self.question_edit.text().strip()
        if not question or not self.controller.ask(question):
            return
        self.keeper.log({"type": "question", "question": question, "time": self.video_view.frame_time})
        self.question_edit.clear()
        self.video_view.setFocus(Qt.OtherFocusReason)  # Space, C and the seek keys work at once again
        self.presenter.message(f"Asked: {question}", 4000)

    def apply_instruction(self) -> None:
        text = self.instruction_edit.text().strip() or AppSettings().instruction
        self.instruction_edit.setText(text)
        if text != self.settings.instruction:
            self.settings.instruction = text
            self.settings.save(self.store)
        if self.controller.set_query(text):
            self.keeper.log({"type": "instruction", "text": text})
        self.presenter.message(f"Instruction: {text}", 4000)

    def clear_transcript(self) -> None:
        self.session_view.clear()

    def _set_title(self, source: str) -> None:
        self.setWindowTitle(f"{source} — {APP_NAME}" if source else APP_NAME)

    def choose_save_transcript(self) -> None:
        path = self.dialogs.save_transcript(self.default_save_path())
        if path:
            self.save_transcript(path)

    def default_save_path(self) -> Path:
        return self.keeper.default_save_path()

    def save_transcript(self, path: str | Path) -> Path | None:
        return self.session_view.save(path)

    def open_settings(self) -> None:
        chosen = edit_settings(self.settings, self, self.model_override)
        if chosen is not None:
            self.apply_settings(chosen)

    def apply_settings(self, new: AppSettings) -> None:
        old, self.settings = self.settings, new
        new.save(self.store)
        if new.instruction != old.instruction:
            self.instruction_edit.setText(new.instruction)
            self.apply_instruction()
        self.engine.show()
        if engine_key(new) != engine_key(old):
            if new.model != old.model:
                self.model_override = None
            self.load_model()  # never two models at once: while a run is busy it loads when the run has ended
            if self.run is not None:
                self.stop()
                self.presenter.message("Stopping to switch models…", 6000)
        elif self.run is not None and (new.max_pixels, new.max_new_tokens, new.repetition_penalty, new.memory) != \
                (old.max_pixels, old.max_new_tokens, old.repetition_penalty, old.memory):
            self.presenter.message("New engine settings apply at the next Start", 6000)
        speech = self._speech_config()
        self.speak.show(speech.enabled)
        self.speech.configure(speech)  # a new voice or output takes effect at once

    def _speech_config(self) -> SpeechConfig:
        s = self.settings
        return SpeechConfig(s.speech_enabled and self._speech_allowed(), s.voice, s.audio_device, self.engine.server)

    def _speech_allowed(self) -> bool:  # over a server, its voice speaks: nothing to download here
        return self.engine.server or self.model_ui.speech_wanted(
            self.settings.voice, lambda: self.speak.set_enabled(True),
            lambda: self.apply_settings(dataclasses.replace(self.settings, voice="espeak", speech_enabled=True)))

    def _show_speech_state(self, state: str) -> None:
        self.presenter.speech(state, self.speech.engine_name, self.settings.voice, self.settings.audio_device)

    def show_error(self, text: str, level: str = "error", actions=None, key: str = "run", details: str = "") -> None:
        """A message in the stack (errors above warnings above notices); `key` replaces its predecessor."""
        self.message_bar.show_message(text, level, actions, key=key, details=details)
        if level == "error":
            self.presenter.message(text, 10000)

    def _update_controls(self) -> None:
        c = self.controller
        running = c.run is not None
        narrating = c.state is State.NARRATING  # one model, one stream: Start waits for it
        self.start_button.setEnabled(not narrating and c.state is not State.STOPPING)
        self.toggle_action.setEnabled(not narrating)
        self.start_button.setText("Stopping…" if c.state is State.STOPPING else "Stop" if running else "Start")
        self.start_button.setIcon(self.style().standardIcon(QStyle.SP_MediaStop if running else QStyle.SP_MediaPlay))
        self.toggle_action.setText("&Stop" if running else "&Start")
        self.ask_button.setEnabled(c.can_ask)
        self.ask_button.setToolTip(ASK_TIPS.get(c.state, ASK_TIPS[None]) if not c.can_ask else ASK_TIPS[State.RUNNING])
        if c.waiting_for_model:
            self.start_button.setText("Waiting for model…")

    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_file(files[0])

    def _restore_geometry(self) -> None:
        geometry = self.store.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the run, a narration and speech and join their threads (engine, capture, speech) within
        `timeout_s`; False when one had to be left to end on its own."""
        ended = self.controller.shutdown(timeout_s, while_stopping=self.speech.shutdown)
        self.keeper.end_run(keep_open=False)  # an answer cut short is logged; the file closes
        return ended

    def closeEvent(self, event) -> None:
        started = time.monotonic()
        self.shutdown()
        # helper threads that have delivered their result end within moments: join them too
        # (a model load still in progress cannot be interrupted; it is a daemon thread)
        left = max(0.1, STOP_TIMEOUT_S - (time.monotonic() - started))
        if not self.loader.busy:
            self.loader.join(left / 2)
        for task in self._tasks:
            task.join(left / 2 / max(1, len(self._tasks)))
        self.model_ui.progress.close()
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.sync()
        super().closeEvent(event)
