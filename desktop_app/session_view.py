"""A run as the window shows it: the engine's events go to the transcript, the captions, the
speech, the status bar and the session file; a run's start and end reset and tidy them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Slot

from desktop_app.message_bar import MessageBar
from desktop_app.playback import PlaybackController
from desktop_app.session_keeper import SessionKeeper
from desktop_app.speech import SpeechController
from desktop_app.status_presenter import StatusPresenter
from desktop_app.transcript import should_log
from desktop_app.transcript_view import TranscriptView
from desktop_app.video_view import VideoView
from desktop_app.workers import user_message
from engine import Answer, Commentary, Compaction, Seek, Stats, StreamEnded, event_to_record
from tts.received import NoVoice, ReceivedAudio

log = logging.getLogger(__name__)
PLACEHOLDER = "Choose a source and press Start"


class SessionView(QObject):
    """`set_title(text)` names the source in the window title ("" for none)."""

    def __init__(self, keeper: SessionKeeper, transcript_view: TranscriptView, video_view: VideoView,
                 playback: PlaybackController, speech: SpeechController, presenter: StatusPresenter,
                 messages: MessageBar, set_title: Callable[[str], None], parent: QObject | None = None):
        super().__init__(parent)
        self.keeper, self.transcript_view, self.video_view = keeper, transcript_view, video_view
        self.playback, self.speech, self.presenter, self.messages = playback, speech, presenter, messages
        self._set_title = set_title
        self._answers_after_end = True  # the run's session answers questions once its video has ended

    def begin(self, run, model: str, instruction: str) -> None:
        """A run starts: a new transcript and session file, the video from its preview tap."""
        spec = run.spec
        self.messages.dismiss("run")
        self.messages.dismiss("start")
        self.clear()
        self.keeper.begin(spec, model, instruction)
        self.presenter.new_run()
        self.video_view.set_tap(run.preview)
        self.video_view.clear("Opening " + spec.title() + "…")
        self.playback.attach(run)
        self.speech.begin_run(run.session)
        self._answers_after_end = run.answers_after_end
        self._set_title(spec.title())
        self.presenter.message(f"Watching {spec.title()}", 4000)

    @Slot(object, bool)
    def end(self, run, kept: bool) -> None:
        """The run's thread has ended: keep the transcript, close the log unless questions go on."""
        self.speech.end_run(silence=False, answers_go_on=kept)  # a video that ended may finish its last phrase
        self.keeper.end_run(keep_open=kept)
        self.playback.detach()
        self.video_view.set_tap(None)
        self.video_view.set_placeholder(PLACEHOLDER)
        self._set_title("")

    def clear(self) -> None:
        self.keeper.clear()
        self.transcript_view.clear_entries()
        self.video_view.captions.clear()

    @Slot(object)
    def on_event(self, event) -> None:
        if isinstance(event, (ReceivedAudio, NoVoice)):  # a server's speech: for the voice only
            self.speech.on_event(event)
            return
        if should_log(event):
            self.keeper.log(event_to_record(event))
        self.speech.on_event(event)
        shown = self.keeper.transcript.apply(event)
        if shown is not None:
            index, created = shown
            self.transcript_view.show_entry(index, self.keeper.transcript.entries[index], created)
        if isinstance(event, (Commentary, Answer)):
            if isinstance(event, Commentary) and event.chunk_index == 0:  # the close-time test waits for it
                log.info("first comment shown at %.1f s", event.end)
            self.video_view.add_event(event)
        elif isinstance(event, Stats):
            self.presenter.stats(event)
        elif isinstance(event, Compaction):
            self.presenter.compaction(event)
        elif isinstance(event, StreamEnded):
            self.presenter.stream_ended(event.time, self._answers_after_end)
        elif isinstance(event, Seek):
            self.video_view.captions.clear()

    @Slot(object)
    def on_error(self, exc) -> None:
        message = user_message(exc)
        self.keeper.log({"type": "error", "message": message})
        self.messages.show_message(message, "error", key="run")
        self.presenter.message(message, 10000)

    def save(self, path: str | Path) -> Path | None:
        try:
            saved = self.keeper.save(path)
        except (OSError, ValueError) as exc:
            text = f"Could not save the transcript: {exc}. Choose another place with File > Save transcript."
            self.messages.show_message(text, "error", key="save")
            self.presenter.message(text, 10000)
            return None
        self.presenter.message(f"Saved {saved}", 6000)
        return saved
