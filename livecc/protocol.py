"""The wire protocol of `livecc serve` (docs/protocol.md), shared by the server and its clients.

JSON text messages over one WebSocket, shaped like the OpenAI Realtime API. This module turns the
engine's events into messages and back, and frames into base64 JPEG/PNG and back. It imports
neither torch nor the server, so a client-only install can use it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct

import cv2
import numpy as np

from engine.errors import LiveCCError
from engine.session.events import Answer, Commentary, Compaction, Event, Seek, Stats, StreamEnded
from tts.received import SAMPLE_RATE, ReceivedAudio
from tts.scheduler import Kind

PROTOCOL = "livecc.realtime.v1"
PATH = "/v1/realtime"
FORMATS = ("jpeg", "png")
JPEG_QUALITY = 90
MAX_FRAME_PIXELS = 4096 * 4096  # a decoded frame's size at most (the compressed size is capped separately)
AUDIO_RATE = SAMPLE_RATE  # speech goes down as 16-bit little-endian mono PCM at 24 kHz
AUDIO_DELTA, AUDIO_DONE = "response.output_audio.delta", "response.output_audio.done"
MODALITIES = ("text", "audio")

# Close codes (RFC 6455): why a session ended.
NORMAL, GOING_AWAY, POLICY, TOO_BIG, SERVER_ERROR, TRY_LATER = 1000, 1001, 1008, 1009, 1011, 1013
BUSY_REASON = "busy, try later"
STOPPING_REASON = "server stopping"

_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


class FrameError(LiveCCError):
    """A frame message could not be decoded; its session goes on."""

    code = "bad_frame"


# -- frames ---------------------------------------------------------------------------------
def encode_frame(image: np.ndarray, fmt: str = "jpeg", quality: int = JPEG_QUALITY) -> str:
    """An RGB uint8 image as base64 JPEG (lossy) or PNG (lossless: decodes to the same pixels)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise FrameError(f"cannot encode a {image.shape} frame as {fmt}")
    return base64.b64encode(data.tobytes()).decode("ascii")


def decode_frame(text: object, fmt: object, max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """The RGB image of a frame message's base64 data; FrameError says what is wrong with it."""
    if fmt not in FORMATS:
        raise FrameError(f"frame format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(text, str):
        raise FrameError("frame data must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("frame data is not valid base64") from None
    if not data.startswith(_MAGIC[fmt]):
        raise FrameError(f"frame is not a {fmt.upper()} image")
    size = image_size(data, fmt)
    if size is None or size[0] * size[1] > max_pixels or min(size) < 1:
        raise FrameError(f"frame size {size} is unreadable or over {max_pixels} pixels: send frames at the "
                         "model's resolution")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameError(f"frame is a damaged {fmt.upper()} image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(height, width) from the image header, read before decoding (a small file can claim a huge image)."""
    if fmt == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    return _jpeg_size(data)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The first frame header's size, found as libjpeg finds markers: bytes before an 0xFF are skipped,
    as are 0xFF fill bytes (a parser that took 0xFF 0xFF for a marker could be sent past the real
    header to a decoy one). Scans in C; a header past MAX_JPEG_MARKERS markers is unreadable."""
    i = 2
    for _ in range(MAX_JPEG_MARKERS):
        i = data.find(b"\xff", i)
        found = _NOT_FILL.search(data, i) if i >= 0 else None
        if found is None:
            return None
        marker, i = data[found.start()], found.start() + 1
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # a stuffed zero, TEM, RSTn: no length
            continue
        if marker in (0xD9, 0xDA) or i + 2 > len(data):  # the image ends or its scan starts before a frame header
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            if i + 7 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 3:i + 7])
            return height, width
        i += struct.unpack(">H", data[i:i + 2])[0]
    return None


_NOT_FILL = re.compile(rb"[^\xff]")
MAX_JPEG_MARKERS = 1000  # a camera's JPEG has tens before its frame header (EXIF, ICC, tables)


# -- speech -----------------------------------------------------------------------------------
def encode_pcm(samples: np.ndarray) -> str:
    """float32 samples in [-1, 1] as base64 16-bit little-endian PCM."""
    pcm = np.round(np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767).astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode("ascii")


def decode_pcm(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i2").astype(np.float32) / 32767


def audio_seconds(message: dict) -> float:
    """How long an audio delta plays (from its base64 length: no decoding); 0 for other messages."""
    return len(message.get("delta", "")) * 3 // 8 / AUDIO_RATE


def received_audio(message: dict) -> ReceivedAudio:
    response, done = message["response"], message["type"] == AUDIO_DONE
    samples = np.zeros(0, np.float32) if done else decode_pcm(message["delta"])
    return ReceivedAudio(response["id"], Kind(response["kind"]), response["text"], samples, done,
                         response.get("start"), response.get("end"), response.get("due"))


# -- messages ---------------------------------------------------------------------------------
def dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def error(code: str, message: str, event_id: str | None = None, kind: str = "invalid_request_error") -> dict:
    body = {"type": kind, "code": code, "message": message}
    if event_id is not None:
        body["event_id"] = event_id
    return {"type": "error", "error": body}


def closed(reason: str) -> dict:
    return {"type": "session.closed", "reason": reason}


def frame_message(image: np.ndarray, timestamp: float, duration: float, fmt: str = "jpeg") -> dict:
    return {"type": "input_video_buffer.append", "format": fmt, "timestamp": timestamp, "duration": duration,
            "frame": encode_frame(image, fmt)}


def question_message(text: str) -> dict:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


def question_text(message: dict) -> str | None:
    """The typed question of a conversation.item.create, or None when it carries none."""
    item = message.get("item")
    content = item.get("content") if isinstance(item, dict) else None
    if not isinstance(content, list):
        return None
    texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "input_text"]
    text = " ".join(t for t in texts if isinstance(t, str)).strip()
    return text or None


# -- engine events <-> messages ---------------------------------------------------------------
class EventEncoder:
    """Engine events -> server messages for one session. The engine answers one question at a time:
    the encoder numbers the answers and keeps the open one's text, so deltas carry only what is new."""

    def __init__(self):
        self.answers = 0
        self._open: str | None = None  # the answer being streamed, as sent so far

    def messages(self, event: Event) -> list[dict]:
        if isinstance(event, Commentary):
            response = {"id": f"chunk-{event.chunk_index}", "kind": "commentary"}
            return [_delta(response, event.text, ""),
                    {"type": "response.output_text.done", "response": response, "text": event.text,
                     "start": event.start, "end": event.end, "chunk_index": event.chunk_index}]
        if isinstance(event, Answer):
            return self._answer(event)
        if isinstance(event, Stats):
            return [{"type": "stats", "stats": _fields(event)}]
        if isinstance(event, Compaction):
            return [{"type": "compaction", "compaction": _fields(event)}]
        if isinstance(event, StreamEnded):
            return [{"type": "input_video_buffer.ended", "time": event.time}]
        if isinstance(event, Seek):
            return [{"type": "input_video_buffer.cleared", "time": event.time}]
        return []

    def _answer(self, event: Answer) -> list[dict]:
        if self._open is None:
            self.answers += 1
            self._open = ""
        response = {"id": f"answer-{self.answers}", "kind": "answer", "question": event.question, "time": event.time}
        messages = [_delta(response, event.text, self._open)] if event.text != self._open or not event.done else []
        self._open = event.text
        if event.done:
            self._open = None
            messages.append({"type": "response.output_text.done", "response": response, "text": event.text,
                             "recalled": [list(span) for span in event.recalled], "note": event.note,
                             "thumbnails": [encode_frame(image, "jpeg") for image in event.thumbnails]})
        return messages


def _delta(response: dict, text: str, before: str) -> dict:
    """`delta` extends the text so far; `text` is all of it (a decode may revise its last character)."""
    delta = text[len(before):] if text.startswith(before) else text
    return {"type": "response.output_text.delta", "response": response, "delta": delta, "text": text}


def _fields(event) -> dict:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def message_event(message: dict) -> Event | ReceivedAudio | None:
    """The engine event a server message stands for, or its speech (None for deltas of commentary and
    for the rest)."""
    kind = message.get("type")
    if kind == "response.output_text.done" and message["response"]["kind"] == "commentary":
        return Commentary(message["start"], message["end"], message["text"], message["chunk_index"])
    if kind in ("response.output_text.delta", "response.output_text.done") and message["response"]["kind"] == "answer":
        response, done = message["response"], kind.endswith(".done")
        recalled = tuple(tuple(span) for span in message.get("recalled", ()))
        thumbnails = tuple(decode_frame(text, "jpeg") for text in message.get("thumbnails", ()))
        return Answer(response["question"], message["text"], done, response["time"], recalled, thumbnails,
                      message.get("note", ""))
    if kind == "stats":
        return Stats(**message["stats"])
    if kind == "compaction":
        return Compaction(**message["compaction"])
    if kind == "input_video_buffer.ended":
        return StreamEnded(message["time"])
    if kind == "input_video_buffer.cleared":
        return Seek(message["time"])
    if kind in (AUDIO_DELTA, AUDIO_DONE):
        return received_audio(message)
    return None
