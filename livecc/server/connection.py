"""One WebSocket connection = one session of the replica's engine core (engine/core), batched with the
replica's other sessions on the core's engine thread.

The receive loop turns client messages into frames (into the session's RingBuffer) and commands;
the engine thread's events go back through a bounded queue and a writer task. Whoever ends the
session (the stream's end, a drain, an idle client, a slow reader, an engine error) calls `finish`
once with the close code and the messages the client gets last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import uuid
from dataclasses import replace

from engine.defaults import DEFAULT_QUERY
from engine.errors import LiveCCError
from engine.session.text import checked_text

from livecc import protocol as wire

from .settings import FrameRate, bearer_token, client_config

LOG = logging.getLogger(__name__)
_ENGINE_DONE = object()


class _Refused(Exception):
    """The core had no room for this session: the connection is already closing as busy."""


class Connection:
    def __init__(self, ws, replica, stopping: asyncio.Event):
        self.ws, self.replica, self.settings = ws, replica, replica.settings
        self.stopping = stopping
        self.id = uuid.uuid4().hex[:12]
        self.loop = asyncio.get_running_loop()
        self.config = replica.base_config()
        self.session = None
        self.buffer = None
        self._opening: asyncio.Future | None = None  # the core's open, on a worker thread
        self.engine_done = threading.Event()  # the core ended this session: its slab is free
        self.outgoing: asyncio.Queue = asyncio.Queue()
        self.encoder = wire.EventEncoder()
        self.ended: asyncio.Future = self.loop.create_future()  # (close code, reason, last messages)
        self.rate = FrameRate(self.settings.max_frames_per_s)
        self.speech = None  # server.speech.SessionSpeech while the client asks for audio

    # -- lifecycle -------------------------------------------------------------------------
    async def serve(self) -> None:
        await self.ws.accept()
        if not self.settings.allows(bearer_token(self.ws.headers)):
            await self._refuse(wire.POLICY, "bad token",
                               wire.error("bad_token", "wrong or missing token: pass the server's --token"))
            return
        slot = self.replica.admit()
        if slot is None:
            await self._refuse(wire.TRY_LATER, wire.BUSY_REASON, wire.closed("busy"))
            return
        try:
            await self._run()
        finally:
            self._speak(False)
            await self._stop_engine()
            self.replica.release(slot)

    async def _refuse(self, code: int, reason: str, message: dict) -> None:
        try:
            await self.ws.send_text(wire.dumps(message))
            await self.ws.close(code, reason)
        except Exception:  # the client left first: nothing to tell it
            LOG.debug("refused client left", exc_info=True)

    async def _run(self) -> None:
        self._send({"type": "session.created", "protocol": wire.PROTOCOL, "session": self._description()})
        writer = asyncio.create_task(self._write())
        reader = asyncio.create_task(self._read())
        stopping = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait([self.ended, reader, stopping], return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                self.finish(wire.GOING_AWAY, wire.STOPPING_REASON, [wire.closed(wire.STOPPING_REASON)])
            if reader.done() and reader.exception() is not None:
                LOG.error("session %s: reader failed", self.id, exc_info=reader.exception())
                self.finish(wire.SERVER_ERROR, "server error")
            self.finish(wire.NORMAL, "client left")  # the reader ended: the client closed the socket
            code, reason, last = self.ended.result()
            reader.cancel()
            for message in last:
                self._send(message, force=True)
            self.outgoing.put_nowait(None)
            await self._flush(writer)
            await self._close(code, reason)
        finally:
            for task in (reader, writer, stopping):
                task.cancel()

    def finish(self, code: int, reason: str, last: list[dict] | None = None) -> None:
        """End the session (the first call wins): `last` are sent before the close."""
        if not self.ended.done():
            self.ended.set_result((code, reason, last or []))
        if self.buffer is not None:
            self.buffer.close()
        if self.session is not None:
            self.session.stop()

    async def _flush(self, writer: asyncio.Task) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(writer), self.settings.send_timeout_s)
        except (asyncio.TimeoutError, Exception):
            LOG.debug("session %s: last messages not delivered", self.id, exc_info=True)

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code, reason)
        except Exception:  # already closed by the client
            LOG.debug("session %s: close after the client left", self.id, exc_info=True)

    async def _stop_engine(self) -> None:
        """Stop the session and wait until the core has ended it, so the slot is free only once its slab is."""
        if self.buffer is not None:
            self.buffer.close()
        if self.session is None and self._opening is not None:  # an open that the connection's end cancelled
            try:
                self.session = (await self._opening).session
            except Exception:  # refused or failed: no session to end
                LOG.debug("session %s: open ended without a session", self.id, exc_info=True)
        if self.session is not None:
            self.session.stop()
            await asyncio.to_thread(self.engine_done.wait)

    def _description(self) -> dict:
        limits = {name: getattr(self.settings, name) for name in
                  ("max_message_bytes", "max_frames_per_s", "idle_timeout_s")}
        limits["kv_budget"] = self.replica.kv_budget
        voice = self.replica.voice
        return {"id": self.id, "model": self.replica.model_name, "replica": self.replica.name,
                "voice": voice.name if voice is not None else None, "settings": self._settings(), "limits": limits}

    def _settings(self) -> dict:
        from .settings import CLIENT_SETTINGS

        names = CLIENT_SETTINGS + ("fps", "first_chunk_frames", "chunk_frames")  # the last three: read only
        modalities = list(wire.MODALITIES if self.speech is not None else wire.MODALITIES[:1])
        return ({"instructions": self.config.query, "output_modalities": modalities}
                | {name: getattr(self.config, name) for name in names})

    # -- outgoing ----------------------------------------------------------------------------
    def _send(self, message: dict, force: bool = False) -> None:
        if self.outgoing.qsize() >= self.settings.max_pending_messages and not force:
            self.finish(wire.POLICY, "client is not reading")
            return
        self.outgoing.put_nowait(message)

    async def _write(self) -> None:
        while (message := await self.outgoing.get()) is not None:
            try:
                await asyncio.wait_for(self.ws.send_text(wire.dumps(message)), self.settings.send_timeout_s)
            except asyncio.TimeoutError:
                self.finish(wire.POLICY, "client is not reading")
                return
            except Exception:  # the socket is gone: the reader sees the disconnect
                return
            if message["type"] == wire.AUDIO_DELTA and self.speech is not None:
                self.speech.sent(message)

    # -- incoming ----------------------------------------------------------------------------
    async def _read(self) -> None:
        """Messages in turn, until the session ends. Only a message the server accepts keeps the
        session from its idle timeout: a client whose every message is refused holds no slot for long."""
        deadline = self.loop.time() + self.settings.idle_timeout_s
        while not self.ended.done():
            try:
                message = await asyncio.wait_for(self.ws.receive(), max(0.0, deadline - self.loop.time()))
            except asyncio.TimeoutError:
                self.finish(wire.POLICY, "idle timeout", [wire.closed("idle timeout")])
                return
            if message["type"] == "websocket.disconnect":
                return
            if await self._handle_raw(message.get("text"), message.get("bytes")):
                deadline = self.loop.time() + self.settings.idle_timeout_s

    async def _handle_raw(self, text: str | None, data: bytes | None) -> bool:
        """Handle one message; True when it was accepted, False when the client got an error for it."""
        if text is None:
            self._send(wire.error("binary_message", "send JSON text messages (frames are base64 inside them)"))
            return False
        if len(text) > self.settings.max_message_bytes:
            self._send(wire.error("message_too_large", f"a message may hold {self.settings.max_message_bytes} "
                                  "bytes at most: send frames at the model's resolution"))
            return False
        try:
            message = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # NaN and Infinity are not JSON either; nor is [[[[...]]]]
            self._send(wire.error("bad_json", "the message is not valid JSON"))
            return False
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._send(wire.error("bad_message", "a message is a JSON object with a string `type`"))
            return False
        try:
            await self._handle(message)
        except LiveCCError as exc:
            event_id = message.get("event_id")
            self._send(wire.error(exc.code, str(exc), event_id if isinstance(event_id, str) else None))
            return False
        except _Refused:
            return False
        return True

    async def _handle(self, message: dict) -> None:
        kind = message["type"]
        if kind == "input_video_buffer.append":
            await self._append(message)
        elif kind == "conversation.item.create":
            question = wire.question_text(message)
            if question is None:
                raise LiveCCError("conversation.item.create needs a message with input_text content")
            (await self._engine()).ask(question)
        elif kind == "session.update":
            self._update(message.get("session"))
        elif kind == "input_video_buffer.end":
            await self._end(message.get("keep_open", False))
        elif kind == "input_video_buffer.clear":
            await self._clear(message.get("time"))
        else:
            raise LiveCCError(f"unknown message type {kind!r}: see docs/protocol.md")

    async def _end(self, keep_open: object) -> None:
        """No more frames. With `keep_open` the session stays for questions after its end, until the
        client closes it or goes idle; without, the stream's end ends it."""
        if not isinstance(keep_open, bool):
            raise LiveCCError("input_video_buffer.end `keep_open` must be true or false")
        session = await self._engine()
        if keep_open:
            session.keep_open()
        self.buffer.close()

    async def _clear(self, seconds: object) -> None:
        """Forget the conversation; with `time` (a player's seek) the next one starts there, and the
        frames sent after this message are read only once the engine has emptied the buffer of older ones."""
        if seconds is None:
            if self.session is not None:
                self.session.reset()
            return
        seconds = _seconds(seconds)
        if seconds is None:
            raise LiveCCError("input_video_buffer.clear `time` must be a number of seconds >= 0")
        session = await self._engine()
        moved = self.loop.create_future()

        def on_engine_thread(_seconds: float) -> None:
            self.loop.call_soon_threadsafe(lambda: moved.done() or moved.set_result(None))

        session.seek(seconds, on_engine_thread)
        await asyncio.wait([moved, self.ended], return_when=asyncio.FIRST_COMPLETED)

    def _update(self, body: object) -> None:
        if not isinstance(body, dict):
            raise LiveCCError("session.update needs a `session` object")
        settings = body.get("settings", {})
        if settings and self.session is not None:
            raise LiveCCError("settings are fixed once the session has started; only instructions may change")
        # Everything is checked before anything changes: a refused update changes nothing.
        audio = _wants_audio(body["output_modalities"], self.replica.voice is not None) \
            if "output_modalities" in body else None
        config = self.config
        if settings:
            config = client_config(config, settings, self.replica.kv_budget)
        instructions = body.get("instructions")
        if instructions is not None:
            instructions = checked_text(instructions, "instructions").strip() or DEFAULT_QUERY  # as the engine does
            config = replace(config, query=instructions)
        self.config = config
        if audio is not None:
            self._speak(audio)
        if instructions is not None and self.session is not None:
            self.session.set_query(instructions)
        self._send({"type": "session.updated", "session": self._settings()})

    async def _append(self, message: dict) -> None:
        from engine.capture.frames import Frame

        delay = self.rate.delay()
        if delay:
            await asyncio.sleep(delay)  # throttled: a client cannot make the server decode faster than this
        timestamp, duration = _seconds(message.get("timestamp")), _seconds(message.get("duration", 0.0))
        if timestamp is None or duration is None:
            raise wire.FrameError("a frame needs a `timestamp` (s, >= 0) and an optional `duration`")
        image = await asyncio.to_thread(self._decode, message)
        await self._engine()
        frame = Frame(image, timestamp, duration)
        if self.config.live:
            self.buffer.put(frame)  # live: the newest frames win
        else:
            await asyncio.to_thread(self.buffer.put, frame, True)  # a file: every frame, at the engine's pace

    def _decode(self, message: dict):
        image = wire.decode_frame(message.get("frame"), message.get("format", "jpeg"))
        try:
            resize = _resizer(image.shape[0], image.shape[1], self.config.max_pixels, self.config.min_pixels)
        except ValueError as exc:  # a shape the model cannot take (an aspect ratio over 200)
            raise wire.FrameError(f"frame of {image.shape[1]}x{image.shape[0]}: {exc}") from None
        return resize(image) if resize is not None else image

    # -- the engine core ----------------------------------------------------------------------
    async def _engine(self):
        """The session, opened in the replica's core on the first frame or command with the settings
        then in force. A core with no room for one more live stream refuses it: the client is told busy."""
        if self.session is None:
            from engine.capture.frames import RingBuffer
            from engine.core import BusyError, EngineStopped, PoolFullError
            from engine.output.narrate import RING_BYTES, RING_SLOTS

            buffer = RingBuffer(RING_SLOTS, max_bytes=RING_BYTES, min_frames=self.config.first_chunk_frames)
            self.buffer = buffer  # closed by finish() even if this await is cancelled: the core's lane then ends
            self._opening = asyncio.ensure_future(asyncio.to_thread(
                self.replica.open, buffer, self.config, self._from_engine, self._engine_ended))
            try:
                stream = await asyncio.shield(self._opening)  # cancelled here, it still ends in _stop_engine
            except (BusyError, PoolFullError):
                self.finish(wire.TRY_LATER, wire.BUSY_REASON, [wire.closed("busy")])
                raise _Refused from None
            except EngineStopped as exc:  # the replica's engine is gone: ended as an engine error ends it
                self._on_event(wire.error(exc.code, str(exc), kind="server_error"))
                raise _Refused from None
            self.session = stream.session
        return self.session

    def _from_engine(self, event) -> None:
        """On the core's engine thread: hand the event to the event loop."""
        self.loop.call_soon_threadsafe(self._on_event, event)

    def _engine_ended(self, error: BaseException | None) -> None:
        """On the core's engine thread: the session ended, by the stream's end, a stop or an error."""
        if isinstance(error, LiveCCError):
            self._from_engine(wire.error(error.code, str(error), kind="server_error"))
        elif error is not None:
            LOG.error("session %s: engine error", self.id, exc_info=error)
            self._from_engine(wire.error("engine", "the engine failed: see the server log", kind="server_error"))
        self._from_engine(_ENGINE_DONE)
        self.engine_done.set()

    def _on_event(self, event) -> None:
        if self.ended.done():
            return
        if event is _ENGINE_DONE and self.speech is not None:
            self._ending = asyncio.ensure_future(self._end_stream(self.speech))  # kept: the loop holds tasks weakly
        elif event is _ENGINE_DONE:
            self.finish(wire.NORMAL, "stream ended", [wire.closed("stream ended")])
        elif isinstance(event, dict):
            self.finish(wire.SERVER_ERROR, "engine error", [event, wire.closed("engine error")])
        else:
            for message in self.encoder.messages(event):
                if self.speech is not None:
                    self.speech.hear(message)
                self._send(message)

    async def _end_stream(self, speech) -> None:
        """The stream ended: its last phrases are said, then the session closes."""
        from .speech import DRAIN_S

        await asyncio.to_thread(speech.wait_said, DRAIN_S)
        self.finish(wire.NORMAL, "stream ended", [wire.closed("stream ended")])

    # -- speech ---------------------------------------------------------------------------------
    def _speak(self, audio: bool) -> None:
        """Start or stop this session's speech on the replica's voice."""
        if audio and self.speech is None:
            post = lambda message: self.loop.call_soon_threadsafe(self._send_audio, message)  # noqa: E731
            self.speech = self.replica.voice.attach(post)
        elif not audio and self.speech is not None:
            self.replica.voice.detach(self.speech)
            self.speech = None

    def _send_audio(self, message: dict) -> None:
        if self.speech is not None and not self.ended.done():
            self._send(message)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _seconds(value: object) -> float | None:
    """A time in a message as seconds: a finite number >= 0 (no bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return seconds if 0 <= seconds < math.inf else None


def _wants_audio(modalities: object, has_voice: bool) -> bool:
    """Whether `session.output_modalities` asks for speech; LiveCCError when it cannot be had."""
    if not isinstance(modalities, list) or not modalities or not all(m in wire.MODALITIES for m in modalities):
        raise LiveCCError(f"output_modalities must be a list of {' and '.join(wire.MODALITIES)}, e.g. [\"text\"]")
    if "audio" in modalities and not has_voice:
        raise LiveCCError("this server has no speech", "ask for [\"text\"], or start the server with "
                          "`livecc serve --speech chattts` (or espeak)", "no_speech")
    return "audio" in modalities


def _resizer(height: int, width: int, max_pixels: int, min_pixels: int):
    """The engine's own capture resize: a frame already at the model's size passes unchanged, a
    larger one is resized exactly as a local run would."""
    from engine.model.preprocess import frame_resizer

    return frame_resizer(height, width, max_pixels, min_pixels)
