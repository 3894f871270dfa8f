"""The Settings dialog: edits an AppSettings; the window saves it to QSettings on OK."""

from __future__ import annotations

import dataclasses
import logging

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from desktop_app.engine_settings import EngineGroup
from desktop_app.settings import AppSettings
from engine.defaults import DEFAULT_MODEL, PIXEL_UNIT, PRECISIONS

log = logging.getLogger(__name__)


def output_devices() -> list[str]:
    """Names of the sound outputs PortAudio sees; empty when sounddevice cannot load."""
    try:
        import sounddevice
        return [d["name"] for d in sounddevice.query_devices() if d.get("max_output_channels", 0) > 0]
    except (ImportError, OSError) as exc:  # no PortAudio: speech has no device to choose
        log.info("no audio outputs: %s", exc)
        return []


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent: QWidget | None = None, devices: list[str] | None = None,
                 override: str | None = None):
        super().__init__(parent)
        self._override = override  # a --model for this run only: shown, with a note
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        layout = QVBoxLayout(self)
        self.engine = EngineGroup(settings)
        layout.addWidget(self.engine)
        layout.addWidget(self._model_group(settings))
        layout.addWidget(self._commentary_group(settings))
        layout.addWidget(self._speech_group(settings, output_devices() if devices is None else devices))
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel | QDialogButtonBox.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.RestoreDefaults).clicked.connect(lambda: self._fill(AppSettings()))
        layout.addWidget(buttons)
        self._region = settings.screen_region

    def _model_group(self, s: AppSettings) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.model_edit = QLineEdit(s.model)
        self.model_edit.setPlaceholderText(DEFAULT_MODEL)
        self.model_edit.setToolTip("A Hugging Face model id or a local folder with a Qwen2-VL checkpoint")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse_model)
        row = QHBoxLayout()
        row.addWidget(self.model_edit, 1)
        row.addWidget(browse)
        form.addRow("Model id or folder", row)
        if self._override:
            self.override_note = QLabel("In force for this run only (--model or LIVECC_MODEL); "
                                        "change it here to make another model the default.")
            self.override_note.setWordWrap(True)
            self.override_note.setStyleSheet("color: palette(mid); font-size: 11px;")
            form.addRow("", self.override_note)
        self.max_pixels = QSpinBox()
        self.max_pixels.setRange(100, 4096)
        self.max_pixels.setSuffix(" × 28 × 28")
        self.max_pixels.setToolTip("Frame size the model sees; lower is faster (default 384)")
        self.max_pixels.setValue(s.max_pixels // PIXEL_UNIT)
        form.addRow("Max pixels", self.max_pixels)
        self.quantize = QComboBox()
        self.quantize.addItems(PRECISIONS)
        self.quantize.setToolTip("Weight precision: auto = bf16 if it fits the GPU, else int8, else int4 "
                                 "(a change reloads the model)")
        self.quantize.setCurrentText(s.quantize)
        form.addRow("Quantize", self.quantize)
        return box

    def _commentary_group(self, s: AppSettings) -> QGroupBox:
        box = QGroupBox("Commentary")
        form = QFormLayout(box)
        self.instruction = QLineEdit(s.instruction)
        self.instruction.setToolTip("The running instruction; ask for another language here, "
                                    "e.g. 'Please describe the video in French.'")
        form.addRow("Instruction", self.instruction)
        self.max_new_tokens = QSpinBox()
        self.max_new_tokens.setRange(1, 256)
        self.max_new_tokens.setValue(s.max_new_tokens)
        form.addRow("Max new tokens per second", self.max_new_tokens)
        self.repetition_penalty = QDoubleSpinBox()
        self.repetition_penalty.setRange(1.0, 2.0)
        self.repetition_penalty.setSingleStep(0.01)
        self.repetition_penalty.setDecimals(2)
        self.repetition_penalty.setValue(s.repetition_penalty)
        form.addRow("Repetition penalty", self.repetition_penalty)
        self.memory = QCheckBox("Visual memory: questions can recall video older than the context")
        self.memory.setChecked(s.memory)
        form.addRow(self.memory)
        return box

    def _speech_group(self, s: AppSettings, devices: list[str]) -> QGroupBox:
        box = QGroupBox("Speech")
        form = QFormLayout(box)
        self.speech = QCheckBox("Speak commentary and answers")
        self.speech.setChecked(s.speech_enabled)
        form.addRow(self.speech)
        self.voice = QComboBox()
        self.voice.setEditable(True)
        self.voice.addItems(["", "chattts:2222", "espeak", "espeak:en-gb", "none"])
        self.voice.setCurrentText(s.voice)
        self.voice.lineEdit().setPlaceholderText("default: ChatTTS speaker 2222, else espeak-ng")
        self.voice.setToolTip("A ChatTTS speaker seed or name (2222, alice), chattts:SEED, espeak, "
                              "espeak:VOICE (`espeak-ng --voices`), or none (silent)")
        form.addRow("Voice", self.voice)
        self.audio_device = QComboBox()
        self.audio_device.addItem("System default", "")
        for name in devices:
            self.audio_device.addItem(name, name)
        if s.audio_device and self.audio_device.findData(s.audio_device) < 0:
            self.audio_device.addItem(f"{s.audio_device} (not found)", s.audio_device)
        self.audio_device.setCurrentIndex(max(0, self.audio_device.findData(s.audio_device)))
        form.addRow("Audio output", self.audio_device)
        note = QLabel("A new voice or output takes effect at once; loading ChatTTS can take a minute "
                      "(the status bar shows it). The Speak button in the toolbar (Ctrl+Shift+M) mutes and unmutes.")
        note.setWordWrap(True)
        note.setStyleSheet("color: palette(mid);")
        form.addRow(note)
        return box

    def accept(self) -> None:
        if self.engine.check():  # a bad server URL keeps the dialog open, saying what to fix
            super().accept()

    def _fill(self, s: AppSettings) -> None:
        self.engine.fill(s)
        self.model_edit.setText(s.model)
        self.max_pixels.setValue(s.max_pixels // PIXEL_UNIT)
        self.quantize.setCurrentText(s.quantize)
        self.instruction.setText(s.instruction)
        self.max_new_tokens.setValue(s.max_new_tokens)
        self.repetition_penalty.setValue(s.repetition_penalty)
        self.speech.setChecked(s.speech_enabled)
        self.memory.setChecked(s.memory)
        self.voice.setCurrentText(s.voice)
        self.audio_device.setCurrentIndex(max(0, self.audio_device.findData(s.audio_device)))

    def _browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a local model folder", self.model_edit.text())
        if folder:
            self.model_edit.setText(folder)

    def result_settings(self) -> AppSettings:
        return AppSettings(
            model=self.model_edit.text().strip() or DEFAULT_MODEL,
            max_pixels=self.max_pixels.value() * PIXEL_UNIT,
            repetition_penalty=round(self.repetition_penalty.value(), 2),
            max_new_tokens=self.max_new_tokens.value(),
            instruction=self.instruction.text().strip() or AppSettings().instruction,
            speech_enabled=self.speech.isChecked(),
            memory=self.memory.isChecked(),
            voice=self.voice.currentText().strip(),
            audio_device=self.audio_device.currentData() or "",
            screen_region=self._region,
            quantize=self.quantize.currentText(),
            **self.engine.values(),
        )


def edit_settings(settings: AppSettings, parent: QWidget | None, override: str | None) -> AppSettings | None:
    """Settings > OK: the chosen settings, or None. A model given for this run only (`override`) is
    shown; left untouched it is not saved as the default."""
    shown = dataclasses.replace(settings, model=override) if override else settings
    dialog = SettingsDialog(shown, parent, override=override)
    if not dialog.exec():
        return None
    chosen = dialog.result_settings()
    if override and chosen.model == override:
        chosen = dataclasses.replace(chosen, model=settings.model)
    return chosen
