"""The main window: source picker, video with captions, transcript, question box, status bar.

The GUI thread only paints and forwards commands; the engine runs in a LiveRun's thread and
its events arrive here as queued signals carrying the engine's dataclasses.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, QSignalBlocker, QStandardPaths, Qt, QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QLineEdit, QMainWindow, QMessageBox,
                               QProgressDialog, QPushButton, QSizePolicy, QSplitter, QStyle, QToolBar, QVBoxLayout,
                               QWidget)

from desktop_app.about import about_text
from desktop_app.live_run import STOP_TIMEOUT_S, EndedRun, LiveRun
from desktop_app.message_bar import MessageBar
from desktop_app.model_loader import ModelLoader
from desktop_app.model_source import download_question, needs_download
from desktop_app.narration import Narration, NarrationController
from desktop_app.playback import PlaybackBar, PlaybackController
from desktop_app.recent import RecentFiles
from desktop_app.settings import AppSettings
from desktop_app.settings_dialog import SettingsDialog
from desktop_app.status_fields import StatusFields
from desktop_app.source_picker import VIDEO_FILTER, SourcePicker, SourceSpec
from desktop_app.speech import SpeechConfig, SpeechController
from desktop_app.transcript import FORMATS, SessionRecorder, Transcript, clock, save_transcript, should_log
from desktop_app.transcript_view import TranscriptView
from desktop_app.video_view import VideoView
from desktop_app.viewing import ViewController
from desktop_app.workers import BackgroundTask, user_message
from engine import (Answer, Commentary, Compaction, LiveCCError, Seek, Stats, StreamEnded, event_to_record,
                    list_monitors, list_webcams)

log = logging.getLogger(__name__)
APP_NAME = "LiveCC Desktop"
SPEAK_TIP = "Speak commentary and answers (Ctrl+Shift+M); voice and output in Settings"
SPEECH_STATE_CHARS = 44  # longer states (errors) are cut in the status bar; the tooltip has all


def default_sessions_dir() -> Path:
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or Path.home() / ".livecc") / "sessions"


_STRAGGLERS: set[LiveRun | EndedRun | Narration] = set()  # threads that outlived their use, kept until they end


def _keep_until_finished(run: LiveRun | EndedRun | Narration) -> None:
    """Never destroy a QThread that still runs: hold its owner until its `finished`."""
    run.setParent(None)
    _STRAGGLERS.add(run)
    run.finished.connect(lambda *_: _STRAGGLERS.discard(run))


def join_stragglers(timeout_s: float) -> None:
    """At exit: give runs (and a narration still writing) that outlived their window a last chance to end."""
    for run in list(_STRAGGLERS):
        run.join(timeout_s)


def _default_session_factory(loaded, config):
    from engine import StreamingSession

    return StreamingSession(loaded, config)


class MainWindow(QMainWindow):
    def __init__(self, store: QSettings, model_override: str | None = None, sessions_dir: Path | None = None,
                 session_factory: Callable | None = None, autoload: bool = True, probe_devices: bool = True):
        super().__init__()
        self.store = store
        self.settings = AppSettings.load(store)
        self.model_override = model_override
        self.sessions_dir = Path(sessions_dir) if sessions_dir else default_sessions_dir()
        self._session_factory = session_factory or _default_session_factory
        self.loaded = None  # engine.model.LoadedModel once loaded
        self.run: LiveRun | None = None
        self.transcript = Transcript()
        self.session_log: SessionRecorder | None = None
        self.recent = RecentFiles(store)
        self.transcript_source: SourceSpec | None = None  # what the transcript in the window is about
        self.ended: EndedRun | None = None  # the last file's session, after its end: it still answers
        self._stream_ended = False
        self._pending: SourceSpec | None = None  # Start pressed while the model loads or a run stops
        self._load_when_free = False  # the model changed while busy: load it once the run, answer or narration ends
        self.about_box: QMessageBox | None = None
        self._tasks: list[BackgroundTask] = []
        self.loader = ModelLoader(self)
        self.loader.progress.connect(self._on_load_progress)
        self.loader.loaded.connect(self._on_model_loaded)
        self.loader.failed.connect(self._on_model_failed)
        self._progress: QProgressDialog | None = None
        self._compactions = 0
        self._context_budget = 0

        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.resize(1280, 760)
        self._build_actions()
        self._build_toolbar()
        self._build_central()
        self._build_status_bar()
        self._build_menus()
        self._build_speech()
        self.picker.set_recent(self.recent.paths())  # the source list offers recent files too
        self._restore_geometry()
        self._update_controls()
        if probe_devices:
            self.refresh_devices()
        if autoload and self._model_wanted():
            self.load_model()

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------
    def _build_actions(self) -> None:
        icon = self.style().standardIcon
        self.open_action = QAction(icon(QStyle.SP_DialogOpenButton), "&Open video…", self)
        self.open_action.setShortcut(QKeySequence.Open)
        self.open_action.triggered.connect(self.choose_file)
        self.save_action = QAction(icon(QStyle.SP_DialogSaveButton), "&Save transcript…", self)
        self.save_action.setShortcut(QKeySequence.Save)
        self.save_action.triggered.connect(self.choose_save_transcript)
        self.sessions_action = QAction("Open session &folder", self)
        self.sessions_action.triggered.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.sessions_dir))))
        self.settings_action = QAction(icon(QStyle.SP_FileDialogDetailedView), "Se&ttings…", self)
        self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        self.settings_action.triggered.connect(self.open_settings)
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence.Quit)
        self.quit_action.triggered.connect(self.close)
        self.toggle_action = QAction("&Start", self)
        # Space starts and stops; line edits take Space for typing (they accept ShortcutOverride)
        self.toggle_action.setShortcut(QKeySequence(Qt.Key_Space))
        self.toggle_action.triggered.connect(self.toggle_run)
        self.ask_action = QAction("&Ask a question", self, shortcut=QKeySequence("Ctrl+L"))
        self.ask_action.triggered.connect(lambda: self.question_edit.setFocus(Qt.ShortcutFocusReason))
        self.narrator = NarrationController(self, self._narration_blocker,
                                            lambda path: Narration(path, self.loaded, self._session_config(None)))
        self.narrator.notice.connect(lambda text, level: self.show_error(text, level, key="narrate"))
        self.narrator.busy_changed.connect(self._on_model_busy_changed)
        self.recent_menu_title = "Open &recent"
        self.about_action = QAction("&About LiveCC Desktop", self)
        self.about_action.triggered.connect(self._about)
        self.clear_action = QAction("&Clear transcript", self)
        self.clear_action.triggered.connect(self.clear_transcript)
        self.speak_action = QAction(icon(QStyle.SP_MediaVolume), "Spea&k", self)
        self.speak_action.setCheckable(True)
        self.speak_action.setChecked(self.settings.speech_enabled)
        self.speak_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.speak_action.setToolTip(SPEAK_TIP)
        self.speak_action.toggled.connect(self.set_speech_enabled)

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
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.about_action)
        self.viewing.chrome.append(bar)
        for action in (*self.viewing.actions(), self.playback.pause_action, self.ask_action):
            if action is not None:
                self.addAction(action)  # shortcuts work in fullscreen too, with the menu bar hidden

    def _build_toolbar(self) -> None:
        bar = QToolBar("Source")
        self.toolbar = bar
        bar.setMovable(False)
        bar.setObjectName("SourceToolbar")
        self.addToolBar(bar)
        bar.addWidget(QLabel(" Source "))
        self.picker = SourcePicker()
        self.picker.open_file_requested.connect(self.choose_file)
        self.picker.changed.connect(self._update_controls)
        bar.addWidget(self.picker)
        self.start_button = QPushButton("Start")
        self.start_button.setMinimumWidth(96)
        self.start_button.setToolTip("Start or stop watching (Space)")
        self.start_button.setFocusPolicy(Qt.NoFocus)  # a disabled button must not hand focus to a text field
        self.start_button.clicked.connect(self.toggle_run)
        bar.addWidget(self.start_button)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        bar.addWidget(spacer)
        bar.addAction(self.open_action)
        bar.addAction(self.save_action)
        bar.addAction(self.speak_action)
        bar.addAction(self.settings_action)

    def _build_central(self) -> None:
        self.message_bar = MessageBar()
        self.video_view = VideoView()
        self.video_view.setFocusPolicy(Qt.StrongFocus)  # clicking the video takes focus out of text fields
        self.playback_bar = PlaybackBar()
        self.playback = PlaybackController(self.playback_bar, lambda: self.video_view.frame_time, self)
        self.instruction_edit = QLineEdit(self.settings.instruction)
        self.instruction_edit.setToolTip("The running instruction the model follows; press Enter to apply")
        self.instruction_edit.returnPressed.connect(self.apply_instruction)
        self.question_edit = QLineEdit()
        self.question_edit.setPlaceholderText("Ask about the video… (Enter)")
        self.question_edit.returnPressed.connect(self.ask_question)
        self.ask_button = QPushButton("Ask")
        self.ask_button.clicked.connect(self.ask_question)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(8, 8, 4, 8)
        lv.addWidget(self.message_bar)
        lv.addWidget(self.video_view, 1)
        lv.addWidget(self.playback_bar)
        inputs = QWidget()
        iv = QVBoxLayout(inputs)
        iv.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Instruction"))
        row.addWidget(self.instruction_edit, 2)
        iv.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Question"))
        row.addWidget(self.question_edit, 2)
        row.addWidget(self.ask_button)
        iv.addLayout(row)
        lv.addWidget(inputs)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(4, 8, 8, 8)
        title = QLabel("Transcript")
        title.setStyleSheet("font-weight: bold;")
        rv.addWidget(title)
        self.transcript_view = TranscriptView()
        self.transcript_view.moment_clicked.connect(self._show_moment)
        rv.addWidget(self.transcript_view, 1)
        self.session_label = QLabel()
        self.session_label.setWordWrap(True)
        self.session_label.setOpenExternalLinks(True)
        self.session_label.setStyleSheet("color: palette(mid); font-size: 11px;")
        rv.addWidget(self.session_label)
        self._show_session_path(None)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([780, 500])
        self.setCentralWidget(self.splitter)
        self.left_panel = left
        self.viewing = ViewController(self, self.video_view, [right, inputs, self.playback_bar, self.message_bar,
                                                              self.toolbar, self.statusBar()], self.store)

    def _build_status_bar(self) -> None:
        self.status_fields = StatusFields(self.statusBar())
        for key, text, widest, tip, priority in (
            ("model", "Model: not loaded", "Model: tiny-qwen2-vl on CPU (float32)", "Model and compute device", 5),
            ("lag", "Lag –", "Lag 99999 ms", "How far the engine is behind the live video", 3),
            ("chunk", "Chunk –", "Chunk 9999 ms", "Time to process the last 1-second chunk", 2),
            ("dropped", "Dropped 0", "Dropped 9999 · skipped 999", "Frames the engine could not keep up with", 1),
            ("context", "Context –", "Context 100% · 99 compactions", "KV cache used, as a share of its budget; a "
                                                                       "compaction keeps the last seconds of video "
                                                                       "and a text memory", 2),
            ("memory", "Memory –", "Memory 9999 key frames · 9999 MB",
             "Visual memory: key frames of older video that questions can recall, and the host memory they use", 1),
            ("speech", "Speech: off", "Speech: speaking (espeak-ng)", "Speech output", 4),
            ("voice", "Voice –", "Voice +99.9 s", "How far behind its video the voice starts (last phrases)", 3),
        ):
            self.status_fields.add(key, text, widest, tip, priority)
        self.status = self.status_fields  # status["lag"] is the lag field's QLabel

    def _build_speech(self) -> None:
        self.speech = SpeechController(self._speech_config(), self)
        self.speech.state_changed.connect(self._show_speech_state)
        self.speech.voice_lag_changed.connect(self.status["voice"].setText)
        self.speech.message.connect(lambda text, level, details: self.show_error(text, level, key="speech",
                                                                                 details=details))
        self._show_speak_action(self.settings.speech_enabled)
        self._show_speech_state(self.speech.state)

    # ------------------------------------------------------------------------------------------
    # model
    # ------------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.model_override or self.settings.model

    def load_model(self) -> None:
        """Load the chosen model (with the chosen precision); while the model is busy, once it is free."""
        why = self._model_busy()
        if why:
            self._load_when_free = True  # never two models at once: this one loads when that ends
            self.statusBar().showMessage(f"The new model loads when the current one is free ({why})", 6000)
            return
        self._load_when_free = False
        self._forget_ended()  # its context belongs to the model that goes
        self.loaded = None
        self.status["model"].setText(f"Model: loading {Path(self.model_name).name or self.model_name}…")
        self._show_progress("Loading model…", None)
        self.loader.quantize = self.settings.quantize
        self.loader.load(self.model_name)
        self._update_controls()

    def _model_wanted(self) -> bool:
        """False (and a question on screen) while the model would be downloaded without consent."""
        if not needs_download(self.model_name) or self.store.value("model/download_ok", "") == self.model_name:
            return True
        self.status["model"].setText("Model: not downloaded")
        self.show_error(download_question(self.model_name), "info", key="model", actions=[
            ("Download", self._agree_to_download),
            ("Choose local folder…", self.choose_model_folder),
        ])
        return False

    def _agree_to_download(self) -> None:
        self.store.setValue("model/download_ok", self.model_name)
        self.store.sync()
        self.message_bar.dismiss("model")
        self.load_model()

    def _show_progress(self, text: str, fraction) -> None:
        if self._progress is None:
            self._progress = QProgressDialog(self)
            self._progress.setWindowTitle("Loading model")
            self._progress.setWindowModality(Qt.NonModal)  # the window stays usable meanwhile
            self._progress.setCancelButtonText("Hide")
            self._progress.setMinimumDuration(300)
            self._progress.setAutoClose(False)
            self._progress.setAutoReset(False)
            self._progress.setMinimumWidth(420)
        self._progress.setLabelText(text)
        if fraction is None:
            self._progress.setRange(0, 0)
        else:
            self._progress.setRange(0, 100)
            self._progress.setValue(int(fraction * 100))

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress.deleteLater()
            self._progress = None

    @Slot(str, object)
    def _on_load_progress(self, message: str, fraction) -> None:
        if self._progress is not None and not self._progress.wasCanceled():
            self._show_progress(message, fraction)

    @Slot(object)
    def _on_model_loaded(self, loaded) -> None:
        self._close_progress()
        self.loaded = loaded
        self.status["model"].setText(f"Model: {loaded.describe()}")
        # the field may elide the text: the tooltip has all of it
        self.status["model"].setToolTip("\n".join([loaded.describe(), loaded.name, *loaded.notes]))
        self.message_bar.dismiss("model")
        self.message_bar.dismiss("start")
        self._update_controls()
        if self._pending is not None:
            spec, self._pending = self._pending, None
            self.start_source(spec)

    @Slot(object)
    def _on_model_failed(self, exc) -> None:
        self._close_progress()
        self._pending = None
        self.status["model"].setText("Model: not loaded")
        self.show_error(user_message(exc), actions=[
            ("Choose local folder…", self.choose_model_folder),
            ("Retry", self.load_model),
        ], key="model")
        self._update_controls()

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a local LiveCC / Qwen2-VL model folder")
        if folder:
            self.set_model(folder)

    def set_model(self, name: str) -> None:
        """Use (and remember) another model; it loads now and serves the next Start."""
        self.model_override = None
        self.settings.model = name
        self.settings.save(self.store)
        self.load_model()

    # ------------------------------------------------------------------------------------------
    # sources and runs
    # ------------------------------------------------------------------------------------------
    def refresh_devices(self) -> None:
        task = BackgroundTask(lambda _report: (list_webcams(), list_monitors()), name="livecc-devices", parent=self)
        task.succeeded.connect(self._on_devices)
        task.failed.connect(lambda exc: log.warning("device probe failed: %s", exc))
        self._tasks.append(task)
        task.start()

    @Slot(object)
    def _on_devices(self, found) -> None:
        cameras, monitors = found
        self.picker.set_devices(cameras, monitors)

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", str(Path.home()), VIDEO_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> None:
        """Select a video file and play it (File > Open, drag and drop, the command line)."""
        spec = self.picker.add_file(path)
        if Path(path).is_file():
            self.recent.add(path)
        if self.loaded is None:
            self.video_view.show_preview(path)  # the user sees the file while the model is not there
        self.start_source(spec)

    def _model_busy(self) -> str | None:
        """Why the model cannot take another stream now (one model, one stream at a time), or None."""
        if self.narrator.narration is not None:
            return "a narration is running: cancel it or wait for it"
        if self.ended is not None and self.ended.answering:
            return "the last question is still being answered"
        if self.run is not None:
            return "a source is playing: stop it first"
        return None

    def _narration_blocker(self) -> str | None:
        """Why a file cannot be narrated now, or None."""
        return "the model is not loaded yet" if self.loaded is None else self._model_busy()

    def _on_model_busy_changed(self, *_) -> None:
        """A narration or an answer after the end started or ended: Start follows; a model chosen
        meanwhile loads now."""
        self._update_controls()
        if self._load_when_free and self._model_busy() is None:
            self.load_model()

    def toggle_run(self) -> None:
        if self.run is not None:
            self.stop()
            return
        spec = self.picker.current_spec()
        if spec is None:
            self.choose_file()
        elif self._confirm_restart():
            self.start_source(spec)

    def _confirm_restart(self) -> bool:
        """Start after a run asks first: it clears the transcript (the session file keeps it)."""
        if not self.transcript.entries:
            return True
        answer = QMessageBox.question(self, "Start again?", "Starting again clears the transcript in the window. "
                                      "It stays in the session file; File > Save transcript keeps a copy.",
                                      QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Ok

    def start_source(self, spec: SourceSpec) -> None:
        """Start watching `spec`; waits (without blocking) for the model or a stopping run."""
        self.picker.select(spec)
        if self.run is not None:
            self._pending = spec
            self.stop()
            return
        why = self._model_busy()
        if why:  # a narration, or an answer after the end, has the model
            self.show_error(f"Cannot start {spec.title()} now: {why}.", "info", key="start")
            return
        if self.loaded is None:
            self._pending = spec
            if not self.loader.busy and not self._model_wanted():
                return
            if not self.loader.busy:
                self.load_model()
            self.statusBar().showMessage("Starting as soon as the model is loaded…")
            self.show_error(f"Loading the model {self.model_name}: {spec.title()} starts when it is ready.",
                            "info", key="start")
            self._update_controls()
            return
        self.message_bar.dismiss("run")
        self.message_bar.dismiss("start")
        self._forget_ended()
        try:
            session = self._session_factory(self.loaded, self._session_config(spec))
            run = LiveRun(spec, session, self)
        except LiveCCError as exc:
            self.show_error(str(exc))
            return
        self._begin_session(spec)
        self.run = run
        run.event.connect(self._on_event)
        run.errored.connect(self._on_run_error)
        run.finished.connect(self._on_run_finished)
        self.video_view.set_tap(run.preview)
        self.video_view.clear("Opening " + spec.title() + "…")
        self.playback.attach(run)
        run.start()
        self.speech.begin_run()
        self.setWindowTitle(f"{spec.title()} — {APP_NAME}")
        self.statusBar().showMessage(f"Watching {spec.title()}", 4000)
        self._update_controls()

    def _session_config(self, spec: SourceSpec):
        from engine import SessionConfig

        s = self.settings
        return SessionConfig(query=self.instruction_edit.text().strip() or s.instruction,
                             max_new_tokens=s.max_new_tokens, repetition_penalty=s.repetition_penalty,
                             max_pixels=s.max_pixels, min_pixels=min(s.max_pixels, 100 * 28 * 28),
                             live=True, memory=s.memory)  # the app shows video in real time: commentary must keep up

    def _begin_session(self, spec: SourceSpec) -> None:
        self.clear_transcript()
        self.transcript_source = spec
        self.session_log = SessionRecorder(self.sessions_dir, {
            "type": "session", "source": spec.title(), "kind": spec.kind, "model": self.loaded.name,
            "started": datetime.now().isoformat(timespec="seconds"), "instruction": self.instruction_edit.text()})
        self._show_session_path(None)
        self._compactions, self._context_budget = 0, 0
        self.status["context"].setText("Context –")

    def stop(self) -> None:
        """Ask the run to stop; `_on_run_finished` tidies up when its thread has ended."""
        if self.run is None:
            return
        self.run.stop()
        self.speech.end_run(silence=True)
        self.start_button.setEnabled(False)
        self.start_button.setText("Stopping…")

    @Slot(object)
    def _on_event(self, event) -> None:
        if self.sender() is not self.run and (self.ended is None or self.sender() is not self.ended):
            return
        if should_log(event):
            self._log(event_to_record(event))
        self.speech.on_event(event)
        shown = self.transcript.apply(event)
        if shown is not None:
            index, created = shown
            self.transcript_view.show_entry(index, self.transcript.entries[index], created)
        if isinstance(event, (Commentary, Answer)):
            if isinstance(event, Commentary) and event.chunk_index == 0:  # the close-time test waits for it
                log.info("first comment shown at %.1f s of %s", event.end, self.windowTitle())
            self.video_view.add_event(event)
        elif isinstance(event, Stats):
            self._show_stats(event)
        elif isinstance(event, Compaction):
            self._show_compaction(event)
        elif isinstance(event, StreamEnded):
            self._stream_ended = True
            self.statusBar().showMessage(f"End of video at {event.time:.1f} s: questions are still answered", 8000)
        elif isinstance(event, Seek):
            self.video_view.captions.clear()

    def _show_stats(self, s: Stats) -> None:
        self.status["lag"].setText(f"Lag {s.lag_ms:.0f} ms")
        self.status["chunk"].setText(f"Chunk {s.total_ms:.0f} ms")
        self.status["dropped"].setText(f"Dropped {s.frames_dropped}" + (f" · skipped {s.chunks_skipped}"
                                                                       if s.chunks_skipped else ""))
        self._compactions, self._context_budget = s.compactions, s.budget_tokens
        self._show_context(s.context_fraction)
        self.status["memory"].setText(f"Memory {s.memory_key_frames} key frames · {s.memory_mb:.0f} MB")

    def _show_moment(self, start: float, end: float) -> None:
        """A recalled moment was clicked: say which. It does not seek: a seek starts a new conversation and
        clears the visual memory the answer came from."""
        self.statusBar().showMessage(f"Recalled moment {clock(start)}–{clock(end)}", 6000)

    def _show_compaction(self, c: Compaction) -> None:
        self._compactions += 1  # the next Stats confirms the count
        if self._context_budget:
            self._show_context(c.tokens_after / self._context_budget)
        self.statusBar().showMessage(f"Context compacted: {c.tokens_before} → {c.tokens_after} tokens "
                                     f"({c.ms:.0f} ms)", 6000)

    def _show_context(self, fraction: float) -> None:
        n = self._compactions
        self.status["context"].setText(f"Context {fraction:.0%}" +
                                       (f" · {n} compaction{'s' if n != 1 else ''}" if n else ""))

    @Slot(object)
    def _on_run_error(self, exc) -> None:
        if self.sender() is not self.run and (self.ended is None or self.sender() is not self.ended):
            return
        message = user_message(exc)
        self._log({"type": "error", "message": message})
        self.show_error(message)

    @Slot()
    def _on_run_finished(self) -> None:
        if self.sender() is not self.run:
            return
        self._end_session()
        if self._load_when_free:
            self._pending = None
            self.load_model()
        elif self._pending is not None:
            spec, self._pending = self._pending, None
            self.start_source(spec)

    def _end_session(self) -> None:
        """The run's thread has ended: keep the transcript, close the log, free the run."""
        run, self.run = self.run, None
        self.speech.end_run(silence=False)  # a video that ended may finish its last phrase
        partial = self.transcript.close_open_answer()
        if partial is not None:
            self._log({"type": "answer", "question": partial.question, "text": partial.text,
                                    "done": False, "time": partial.start})
        if run is not None and self._stream_ended:  # keep its context for questions after the end
            self.ended = EndedRun(run.session, self)
            self.ended.event.connect(self._on_event)
            self.ended.errored.connect(self._on_run_error)
            self.ended.finished.connect(self._on_model_busy_changed)
        elif self.session_log is not None:
            self.session_log.close()
        self._stream_ended = False
        self.playback.detach()
        self.video_view.set_tap(None)
        self.video_view.set_placeholder("Choose a source and press Start")
        if run is not None and run not in _STRAGGLERS:
            run.deleteLater()
        self.setWindowTitle(APP_NAME)
        self._update_controls()

    # ------------------------------------------------------------------------------------------
    # questions and instruction
    # ------------------------------------------------------------------------------------------
    def ask_question(self) -> None:
        question = self.question_edit.text().strip()
        if not question:
            return
        if self.run is not None:
            self.run.ask(question)
        elif self.ended is not None:
            why = self._model_busy()  # an answer still being written, or a narration
            if why:
                self.statusBar().showMessage(f"Cannot ask now: {why}", 4000)
                return
            self.ended.ask(question)
        else:
            self.show_error("Start a source first: questions are answered from what the model has seen.", "info",
                            key="start")
            return
        self._log({"type": "question", "question": question, "time": self.video_view.frame_time})
        self.question_edit.clear()
        self.statusBar().showMessage(f"Asked: {question}", 4000)

    def apply_instruction(self) -> None:
        text = self.instruction_edit.text().strip() or AppSettings().instruction
        self.instruction_edit.setText(text)
        if text != self.settings.instruction:
            self.settings.instruction = text
            self.settings.save(self.store)
        if self.run is not None:
            self.run.set_query(text)
            self._log({"type": "instruction", "text": text})
        self.statusBar().showMessage(f"Instruction: {text}", 4000)

    # ------------------------------------------------------------------------------------------
    # transcript
    # ------------------------------------------------------------------------------------------
    def clear_transcript(self) -> None:
        self.transcript = Transcript()
        self.transcript_view.clear_entries()
        self.video_view.captions.clear()

    def choose_save_transcript(self) -> None:
        filters = ";;".join(f"{name} (*{suffix})" for suffix, name in FORMATS.items())
        path, chosen = QFileDialog.getSaveFileName(self, "Save transcript", str(self.default_save_path()), filters)
        if not path:
            return
        if Path(path).suffix.lower() not in FORMATS:  # take the suffix from the chosen filter
            path += next((s for s, name in FORMATS.items() if chosen.startswith(name)), ".txt")
        self.save_transcript(path)

    def default_save_path(self) -> Path:
        """match.srt beside match.mp4 (VLC loads it by itself); live sources: the sessions folder."""
        spec = self.transcript_source
        if spec is not None and spec.kind == "file":
            return Path(spec.path).with_suffix(".srt")
        return self.sessions_dir / f"transcript-{datetime.now():%Y%m%d-%H%M%S}.srt"

    def save_transcript(self, path: str | Path) -> Path | None:
        try:
            saved = save_transcript(self.transcript.entries, path)
        except (OSError, ValueError) as exc:
            self.show_error(f"Could not save the transcript: {exc}")
            return None
        self.statusBar().showMessage(f"Saved {saved}", 6000)
        return saved

    def _log(self, record: dict) -> None:
        """Into the session file (created at the first comment, answer, question or seek)."""
        log_ = self.session_log
        if log_ is None:
            return
        had_file = log_.path is not None
        try:
            log_.write(record)
        except OSError as exc:  # a read-only disk must not stop the commentary
            self.session_log = None
            self.show_error(f"Cannot write the session file in {self.sessions_dir} ({exc}): the transcript is only "
                            "kept in the window; use File > Save transcript", "warning", key="session")
            return
        if not had_file and log_.path is not None:
            self._show_session_path(log_.path)

    def _forget_ended(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """A new run or model, or closing: the ended file's session (its KV cache and memory) goes."""
        ended, self.ended = self.ended, None
        if ended is not None:
            if ended.close(timeout_s):
                ended.deleteLater()
            else:  # mid-step on a slow machine: never destroy a running thread
                log.warning("the answer thread did not stop within %.1f s", timeout_s)
                _keep_until_finished(ended)
        if self.session_log is not None:
            self.session_log.close()

    def _show_session_path(self, path: Path | None) -> None:
        folder = self.sessions_dir
        where = f"<a href='{QUrl.fromLocalFile(str(folder)).toString()}'>{folder}</a>"
        if path is None:
            self.session_label.setText(f"Sessions are saved as JSONL in {where}")
        else:
            self.session_label.setText(f"Saving to {where}/{path.name}")
        self.session_label.setToolTip(str(path or folder))

    # ------------------------------------------------------------------------------------------
    # settings
    # ------------------------------------------------------------------------------------------
    def open_settings(self) -> None:
        shown = self.settings
        if self.model_override:  # show the model in force, and say why it differs from the saved one
            shown = dataclasses.replace(self.settings, model=self.model_override)
        dialog = SettingsDialog(shown, self, override=self.model_override)
        if dialog.exec():
            chosen = dialog.result_settings()
            if self.model_override and chosen.model == self.model_override:
                chosen = dataclasses.replace(chosen, model=self.settings.model)  # untouched: keep the saved one
            self.apply_settings(chosen)

    def apply_settings(self, new: AppSettings) -> None:
        old, self.settings = self.settings, new
        new.save(self.store)
        if new.instruction != old.instruction:
            self.instruction_edit.setText(new.instruction)
            self.apply_instruction()
        if (new.model, new.quantize) != (old.model, old.quantize):
            if new.model != old.model:
                self.model_override = None
            self.load_model()  # never two models at once: while a run is busy it loads when the run has ended
            if self.run is not None:
                self.stop()
                self.statusBar().showMessage("Stopping to switch models…", 6000)
        elif self.run is not None and (new.max_pixels, new.max_new_tokens, new.repetition_penalty, new.memory) != \
                (old.max_pixels, old.max_new_tokens, old.repetition_penalty, old.memory):
            self.statusBar().showMessage("New engine settings apply at the next Start", 6000)
        self._show_speak_action(new.speech_enabled)
        self.speech.configure(self._speech_config())  # a new voice or output takes effect at once

    # ------------------------------------------------------------------------------------------
    # speech
    # ------------------------------------------------------------------------------------------
    def _speech_config(self) -> SpeechConfig:
        s = self.settings
        return SpeechConfig(enabled=s.speech_enabled, voice=s.voice, device=s.audio_device)

    def set_speech_enabled(self, enabled: bool) -> None:
        """The Speak toggle: off mutes at once, on loads the voice if needed; it is remembered."""
        if enabled != self.settings.speech_enabled:
            self.settings.speech_enabled = enabled
            self.settings.save(self.store)
        self._show_speak_action(enabled)
        self.speech.set_enabled(enabled)
        self._show_speech_state(self.speech.state)  # a retry that fails at once unchecks the toggle again

    def _speech_failed(self) -> None:
        """The toggle shows what the status bar says (not speaking), and a choice that failed is not
        remembered as on: the next launch does not warn again. Clicking Speak retries."""
        self._show_speak_action(False)
        self.speak_action.setToolTip("Speech failed (see the message above the video); click to try again")
        if self.settings.speech_enabled:
            self.settings.speech_enabled = False
            self.settings.save(self.store)

    def _show_speak_action(self, enabled: bool) -> None:
        with QSignalBlocker(self.speak_action):
            self.speak_action.setChecked(enabled)
        self.speak_action.setToolTip(SPEAK_TIP)
        self.speak_action.setIcon(self.style().standardIcon(QStyle.SP_MediaVolume if enabled
                                                            else QStyle.SP_MediaVolumeMuted))

    @Slot(str)
    def _show_speech_state(self, state: str) -> None:
        engine = self.speech.engine_name
        text = f"Speech: {state}"
        if state.startswith("error: "):  # the bar shows the gist; the message bar and tooltip the fix
            short = "Speech: error: " + re.split(r"[:;(]", state[len("error: "):], maxsplit=1)[0].strip()
            self._speech_failed()
        else:
            short = text + (f" ({engine})" if engine and state != "off" else "")
        label = self.status["speech"]
        label.setText(short if len(short) <= SPEECH_STATE_CHARS else short[:SPEECH_STATE_CHARS - 1] + "…")
        s = self.settings
        label.setToolTip(f"{text}\nVoice: {s.voice or 'default (ChatTTS, else espeak-ng)'}; "
                         f"output: {s.audio_device or 'system default'}. Toggle with Ctrl+Shift+M; change in Settings.")

    # ------------------------------------------------------------------------------------------
    # messages, controls, drag and drop, closing
    # ------------------------------------------------------------------------------------------
    def show_error(self, text: str, level: str = "error", actions=None, key: str = "run", details: str = "") -> None:
        """A message in the stack (errors above warnings above notices); `key` replaces its predecessor."""
        self.message_bar.show_message(text, level, actions, key=key, details=details)
        if level == "error":
            self.statusBar().showMessage(text, 10000)

    def _update_controls(self) -> None:
        running = self.run is not None
        narrating = self.narrator.narration is not None  # one model, one stream: Start waits for it
        self.start_button.setEnabled(not narrating)
        self.toggle_action.setEnabled(not narrating)
        self.start_button.setText("Stop" if running else "Start")
        self.start_button.setIcon(self.style().standardIcon(QStyle.SP_MediaStop if running else QStyle.SP_MediaPlay))
        self.toggle_action.setText("&Stop" if running else "&Start")
        self.ask_button.setEnabled(running or (self.ended is not None and not narrating))
        if not running and self.loaded is None and self._pending is not None:
            self.start_button.setText("Waiting for model…")

    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_file(files[0])

    def _about(self) -> None:
        if self.about_box is None:  # one box, reused: each click must not leave another behind
            self.about_box = QMessageBox(QMessageBox.Information, "About LiveCC Desktop", "", QMessageBox.Ok, self)
            self.about_box.setTextFormat(Qt.RichText)
            self.about_box.setWindowModality(Qt.NonModal)
        self.about_box.setText(about_text(self.model_name, self.loaded))  # the model may have changed
        self.about_box.show()
        self.about_box.raise_()

    def _restore_geometry(self) -> None:
        geometry = self.store.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the run, a narration and speech and join their threads (engine, capture, speech) within
        `timeout_s`; False when one had to be left to end on its own."""
        self._pending = None
        self._load_when_free = False
        started = time.monotonic()
        narration = self.narrator.narration
        narration_ended = self.narrator.shutdown(timeout_s / 4)
        if not narration_ended:  # let it finish its cue: the exit waits for stragglers
            log.warning("the narration did not stop within %.1f s", timeout_s / 4)
            _keep_until_finished(narration)
        if self.ended is not None:
            self._forget_ended(timeout_s / 4)  # closes the session file kept open for questions after the end
        run = self.run
        if run is not None:
            run.stop()  # the engine winds down while speech stops
        self.speech.shutdown(timeout_s / 2)
        if run is None:
            return narration_ended
        joined = run.join(max(0.1, timeout_s - (time.monotonic() - started)))
        if not joined:  # mid-step on a slow machine: let it finish on its own, never destroy it running
            log.warning("the engine thread did not stop within %.1f s", timeout_s)
            _keep_until_finished(run)
        self._stream_ended = False  # closing: no questions after the end any more
        self._end_session()
        return joined and narration_ended

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
        self._close_progress()
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.sync()
        super().closeEvent(event)
