"""Speech from `livecc serve` (issue 22): the replica's voice says the commentary and answers as
`response.output_audio.delta` (16-bit PCM at 24 kHz) tied to their text replies, bounded per session
as a local player bounds it; `livecc narrate --server --speak` plays it. A real server under uvicorn
with the tiny model and a deterministic voice (tests/servers.py TextTone)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from livecc import protocol as wire
from livecc.cli.main import main
from livecc.client.session import RemoteError, RemoteSession
from livecc.server.speech import MAX_QUEUED_S, ReplicaVoice, at_audio_rate
from servers import TextTone, running_server, wait_idle
from test_speech_policy import FakeClock
from tts.player import PlayerConfig, SpeechPlayer
from tts.received import ReceivedAudio, ReceivedVoice, play_received
from tts.scheduler import Kind, SpeechPolicy
from videos import write_video

SMALL = {"max_pixels": 20000, "min_pixels": 20000}


@pytest.fixture(scope="module")
def speaking(tiny_loaded, tiny_model_dir):
    with running_server(tiny_loaded, tiny_model_dir, voice=ReplicaVoice(TextTone()), sessions=1) as running:
        yield running


@pytest.fixture(scope="module")
def silent(tiny_loaded, tiny_model_dir):
    with running_server(tiny_loaded, tiny_model_dir, sessions=1) as running:
        yield running


def pcm16(samples: np.ndarray) -> np.ndarray:
    """What 16-bit PCM keeps of float samples."""
    return np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)


def session_messages(remote: RemoteSession, question: str | None = None, frames: int = 12) -> list[dict]:
    """Frames of a grey picture, an optional question, the end; every message until the session closes."""
    frame = wire.frame_message(np.full((112, 160, 3), 90, np.uint8), 0.0, 0.5, "png")
    for i in range(frames):
        remote.send(frame | {"timestamp": i * 0.5})
    if question:
        remote.ask(question)
    remote.end()
    messages = []
    while not messages or messages[-1]["type"] != "session.closed":
        messages.append(json.loads(remote.ws.recv(60)))
    return messages


def spoken(messages: list[dict]) -> list[tuple[dict, np.ndarray, dict]]:
    """(response, the phrase's PCM, its done message) for each phrase the server said."""
    phrases, pieces = [], []
    for message in messages:
        if message["type"] == wire.AUDIO_DELTA:
            pieces.append(np.frombuffer(base64.b64decode(message["delta"]), "<i2"))
        elif message["type"] == wire.AUDIO_DONE:
            pcm = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
            phrases.append((message["response"], pcm, message))
            pieces = []
    return phrases


def test_commentary_is_spoken_at_24_khz_as_the_voice_says_it(speaking):
    url, running = speaking
    remote = RemoteSession.connect(url)
    assert remote.voice == "tone"
    settings = remote.update("Describe it.", SMALL, audio=True)
    assert settings["output_modalities"] == ["text", "audio"]
    messages = session_messages(remote)
    replies = {m["response"]["id"]: (i, m) for i, m in enumerate(messages)
               if m["type"] == "response.output_text.done" and m["text"].strip()}
    phrases = spoken(messages)
    assert phrases and all(response["kind"] == "commentary" for response, _, _ in phrases)
    for response, pcm, done in phrases:
        assert pcm.dtype == np.dtype("<i2") and np.array_equal(pcm, pcm16(TextTone().synthesize(response["text"])))
        assert done["samples"] == len(pcm) and "error" not in done
        at, reply = replies[response["id"]]  # the commentary reply it speaks first
        assert response["text"].startswith(reply["text"].strip()) and response["start"] == reply["start"]
        first_audio = next(i for i, m in enumerate(messages) if m.get("response") == response)
        assert first_audio > at  # the text goes first; its speech follows
    stats = [m for m in messages if m["type"] == "stats"]
    assert stats and set(stats[-1]["speech"]) >= {"phrases", "dropped_stale", "dropped_overflow", "merged"}
    ended = [m["type"] for m in messages].index("input_video_buffer.ended")
    assert messages[-1] == wire.closed("stream ended") and ended < len(messages) - 1
    wait_idle(running)


def test_an_answer_is_spoken_under_its_reply_id(speaking):
    url, running = speaking
    remote = RemoteSession.connect(url)
    remote.update("Describe it.", SMALL | {"answer_max_new_tokens": 8}, audio=True)
    messages = session_messages(remote, "What is there?", frames=6)
    answer = next(m for m in messages if m["type"] == "response.output_text.done" and m["response"]["kind"] == "answer")
    said = [(response, pcm) for response, pcm, _ in spoken(messages) if response["kind"] == "answer"]
    assert said and all(response["id"] == answer["response"]["id"] == "answer-1" for response, _ in said)
    assert " ".join(response["text"] for response, _ in said) == answer["text"].strip()
    for response, pcm in said:
        assert np.array_equal(pcm, pcm16(TextTone().synthesize(response["text"])))
    wait_idle(running)


def test_speech_from_a_server_without_a_voice_is_refused_in_one_line(silent):
    url, running = silent
    remote = RemoteSession.connect(url)
    assert remote.voice is None
    with pytest.raises(RemoteError) as refused:
        remote.update("Describe it.", SMALL, audio=True)
    assert refused.value.code == "server-speech" and "\n" not in str(refused.value)
    assert str(refused.value) == ("the server has no speech; drop --speak, or start the server with "
                                  "`livecc serve --speech chattts`")
    assert remote.update("Describe it.", SMALL)["output_modalities"] == ["text"]  # the session goes on
    remote.send({"type": "session.update", "session": {"output_modalities": [{}]}})
    assert json.loads(remote.ws.recv(10))["error"]["message"] == ("output_modalities must be a list of text and "
                                                                   "audio, e.g. [\"text\"]")
    remote.close()
    wait_idle(running)


def test_a_session_s_unsent_audio_is_bounded_and_stale_speech_is_dropped():
    """A client that does not read: the phrases after MAX_QUEUED_S wait, merge, then go stale."""
    clock = FakeClock()
    voice = ReplicaVoice(TextTone(ms_per_char=100), SpeechPolicy(max_pending=1), clock=clock, start=False)
    posted: list[dict] = []
    speech = voice.attach(posted.append)

    def comment(i: int, text: str) -> None:
        speech.hear({"type": "response.output_text.done", "response": {"id": f"chunk-{i}", "kind": "commentary"},
                     "text": text, "start": float(i), "end": i + 1.0, "chunk_index": i})

    comment(0, "one two three")  # 1.3 s of audio
    assert voice.step()
    comment(1, "four five six")
    assert voice.step() and speech.queued_s > MAX_QUEUED_S
    comment(2, "seven eight")
    comment(3, "nine ten")
    assert not voice.step()  # held back: they merge into one phrase instead
    assert [m["response"]["id"] for m in posted if m["type"] == wire.AUDIO_DONE] == ["chunk-0", "chunk-1"]
    stats = {"type": "stats", "stats": {"end": 12.0}}
    speech.hear(stats)  # the video went on: the merged phrase is now more than max_lag behind
    for message in posted:
        speech.sent(message)
    assert not voice.step() and len(posted) == 6
    speech.hear(stats)
    assert stats["speech"] == {"phrases": 2, "dropped_stale": 1, "dropped_overflow": 0, "dropped_barge_in": 0,
                               "merged": 1}
    voice.close()


def test_audio_at_another_rate_goes_out_at_24_khz():
    assert len(at_audio_rate(np.ones(22050, np.float32), 22050)) == 24000
    assert np.allclose(at_audio_rate(np.ones(8000, np.float32), 16000), 1.0)


def received(key: str, kind: Kind, text: str, samples, done: bool, start=None) -> ReceivedAudio:
    span = {} if start is None else {"start": start, "end": start + 1.0, "due": start + 1.0}
    return ReceivedAudio(key, kind, text, np.asarray(samples, np.float32), done, **span)


def test_received_phrases_play_as_local_ones_merged_and_dropped_when_stale():
    clock = FakeClock()
    player = SpeechPlayer(ReceivedVoice(), PlayerConfig(queue_seconds=5.0, policy=SpeechPolicy(max_rate=1.0)),
                          clock=clock)
    a, b = np.full(3000, 0.25, np.float32), np.full(2000, -0.5, np.float32)
    play_received(player, received("chunk-0", Kind.COMMENTARY, "a dog", a[:1000], False, start=0.0))
    play_received(player, received("chunk-0", Kind.COMMENTARY, "a dog", a[1000:], True, start=0.0))
    play_received(player, received("chunk-1", Kind.COMMENTARY, "runs", b, True, start=1.0))
    assert player.pump() == 1  # the two phrases waited together: merged, as a local player merges them
    assert player.scheduler.stats.merged == 1
    assert np.array_equal(player.pull(5000), np.concatenate([a, b]))
    assert player.started[-1].phrase.text == "a dog runs"

    player.set_video_time(20.0)  # far past the next comment's time: it is not said
    play_received(player, received("chunk-2", Kind.COMMENTARY, "late", b, True, start=2.0))
    assert player.pump() == 0 and player.scheduler.stats.dropped_stale == 1
    play_received(player, received("answer-1", Kind.ANSWER, "yes", a, True))
    assert player.pump() == 1 and np.array_equal(player.pull(3000), a)


@pytest.fixture
def played(monkeypatch):
    """The players `livecc narrate --speak` made, and no local synthesizer allowed."""
    import tts.cli_support
    from livecc.cli import narrate

    sinks = []
    make = narrate._speech_sink
    monkeypatch.setattr(narrate, "_speech_sink", lambda *a: sinks.append(make(*a)) or sinks[-1])

    def no_local_voice(*_a, **_k):
        raise AssertionError("over a server, --speak needs no local synthesizer")

    monkeypatch.setattr(tts.cli_support, "make_synthesizer", no_local_voice)
    return sinks


def test_narrate_over_the_server_speaks_with_the_server_s_voice(speaking, null_audio, played, tmp_path):
    url, running = speaking
    video = write_video(tmp_path / "short.mp4", seconds=3, fps=10, width=160, height=112)
    assert main(["narrate", str(video), "--server", url, "--speak", "--max-pixels", "20000"]) == 0
    player = played[0].player
    assert isinstance(player.synth, ReceivedVoice)
    assert any(s.phrase.kind is Kind.COMMENTARY for s in player.started) and player.stats.blocks_played > 0
    wait_idle(running)


def test_narrate_speak_over_a_server_without_a_voice_is_one_line_and_exit_2(silent, null_audio, played, tmp_path,
                                                                               capsys):
    url, running = silent
    video = write_video(tmp_path / "short.mp4", seconds=2, fps=10, width=160, height=112)
    assert main(["narrate", str(video), "--server", url, "--speak"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("livecc: error: the server has no speech; drop --speak, or start the server with "
                   "`livecc serve --speech chattts`")
    wait_idle(running)
