"""The streaming session: per-stream state and the engine's one loop, as a generator.

`StreamingSession.steps(buffer)` reads like an engine step: take the frames that are due (2 fps;
6 for the first chunk, then 2), preprocess them, ask for their visual embeddings, prefill the chunk
with exact M-RoPE positions into the session's KV cache, decode the comment until ` ...`/EOS or
the token limit, emit events. Model work is yielded as requests (engine/session/steps.py): `run`
executes them at once on the session's own runner (one stream), the engine core (engine/core)
batches them with other sessions'. Commands (ask, set_query, reset, seek, stop) arrive through a
queue from any thread and are applied between steps; a question pre-empts commentary.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import torch

from engine import flags
from engine.capture.frames import RingBuffer
from engine.capture.sampler import Chunk, FrameSampler
from engine.defaults import DEFAULT_QUERY
from engine.errors import OutOfMemoryError
from engine.model.loading import LoadedModel
from engine.model.preprocess import VideoInputs, preprocess_frames
from engine.model.prompt import STREAM_CONTINUES, PromptBuilder
from engine.model.rope import demo_positions, segment_positions
from engine.runtime.decode_ops import upload
from engine.runtime.reference import make_runner

from .config import SessionConfig
from .compaction import CompactionSteps
from .context import BoundedContext, KeptChunk
from .decoding import TokenSampler
from .events import Commentary, Event, Seek, Stats, StreamEnded
from .questions import QuestionSteps
from .recall import Recall, thumbnail
from .replies import ReplySteps
from .state import ConversationState, PreparedChunk
from .steps import IDLE, Choice, Encode, Prefill, drive
from .text import checked_text

__all__ = ["SessionConfig", "StreamingSession", "FrameSampler"]


class StreamingSession(CompactionSteps, QuestionSteps, ReplySteps):
    """Streams video chunks through LiveCC with a persistent KV cache and emits typed events."""

    def __init__(self, loaded: LoadedModel, config: SessionConfig | None = None, runner=None,
                 overlap: bool | None = None, timed: bool = True):
        self.loaded = loaded
        # Stats time each stage by synchronizing around it; in the engine core one step runs the
        # stages of many sessions, so a session's sync would stall them all (timed=False).
        self._timed = timed
        self.config = config or SessionConfig()
        plan = getattr(loaded, "plan", None)
        if plan is not None and self.config.kv_budget > plan.kv_budget:  # the memory plan cut it to fit the card
            self.config = self._fitted(plan.kv_budget)
        self.model = loaded.model
        self.device = loaded.device
        self.prompt = PromptBuilder(loaded.tokenizer, self.config.system_prompt)
        self.runner = runner or make_runner(self.model, self.config.kv_budget + 8)  # compaction keeps it <= budget
        if plan is not None and not plan.prefill_graphs and self.runner.supports_prefill_graphs:
            self.runner.drop_prefill_graphs()  # the card has no room for their memory
        self.runner.reset()
        vocab = self.model.lm_head.out_features  # also when lm_head is quantized
        self.sampler = TokenSampler(vocab, self.device, self.config.sampling())
        self.frames = FrameSampler(self.config.fps, self.config.first_chunk_frames, self.config.chunk_frames)
        self.state = ConversationState()
        self.recall = Recall.for_model(self.model, self.prompt, self.config) if self.config.memory else None
        self.context = BoundedContext(self.prompt, self.config.kv_budget, self.config.video_window_s,
                                      self.config.memory_tokens, self.config.chunk_frames / self.config.fps,
                                      on_leave=self.recall.memory.add if self.recall else None)
        self.query = self.config.query
        self.trace: list[tuple[int, torch.Tensor]] | None = None  # (token index, logits) for tests
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._buffer: RingBuffer | None = None
        self._stopped = False
        self._waiting_lock = threading.Lock()
        self._waiting_questions = 0  # asked, not yet taken (QuestionSteps._admit_question)
        self._keep_open = False  # after the stream's end, `steps` answers questions until stop()
        self._started = time.monotonic()  # when run() began: the non-live lag is measured from it
        self._ahead: PreparedChunk | None = None
        # The next chunk's preprocessing and vision run on a low-priority side stream while this
        # chunk decodes on a high-priority one, so decode kernels go first (LIVECC_NO_OVERLAP=1: off).
        if overlap is None:  # the engine core batches vision instead
            overlap = self.device.type == "cuda" and not flags.get("LIVECC_NO_OVERLAP")
        # (Lower numbers mean higher priority; out-of-range values clamp to the device's range.)
        self._side = torch.cuda.Stream(self.device, priority=0) if overlap else None
        self._main = torch.cuda.Stream(self.device, priority=-5) if overlap else None
        self._merge = self.model.config.vision_config.spatial_merge_size

    # -- commands (any thread) -----------------------------------------------------------
    def _fitted(self, kv_budget: int) -> SessionConfig:
        try:
            return replace(self.config, kv_budget=kv_budget)
        except ValueError as exc:  # the cut budget no longer holds the text memory and the longest reply
            raise OutOfMemoryError(f"the GPU's free memory holds a KV budget of only {kv_budget} tokens, too few for "
                                   f"these settings ({exc}): use --quantize int4, a lower --max-pixels, fewer "
                                   "--max-answer-tokens or --memory-tokens, or free GPU memory") from None

    def ask(self, question: str) -> None:
        """Queue a question; TextError (nothing queued) for one too long, not text, or too many waiting."""
        self._command("ask", self._admit_question(question))

    def set_query(self, text: str) -> None:
        self._command("query", checked_text(text, "the instructions"))

    def reset(self) -> None:
        self._command("reset", None)

    def seek(self, seconds: float, reposition: Callable[[float], object] | None = None) -> None:
        """Start a new conversation at `seconds`. `reposition(seconds)` moves the source there; it
        runs on the engine thread between steps, so no chunk mixes the old and new positions."""
        self._command("seek", (seconds, reposition))

    def stop(self) -> None:
        self._stopped = True
        self._command("stop", None)

    def keep_open(self) -> None:
        """Call before closing the buffer: after StreamEnded, `steps` goes on answering questions
        until stop() (a server's session, whose client asks after the end as a local one does)."""
        self._keep_open = True

    def _command(self, kind: str, payload) -> None:
        self._commands.put((kind, payload))
        if self._buffer is not None:
            self._buffer.wake()

    # -- the loop --------------------------------------------------------------------------
    def run(self, buffer: RingBuffer) -> Iterator[Event]:
        """Process the buffer until it is closed and drained, or stop(), on this session's own runner
        (one stream). Yields events. Re-raises the source's error (after every frame it delivered)."""
        previous = torch.cuda.current_stream(self.device) if self._main is not None else None
        if self._main is not None:
            self._main.wait_stream(previous)  # the cache and weights were prepared on the caller's stream
            torch.cuda.set_stream(self._main)  # this (engine) thread's current stream until run ends
        try:
            yield from drive(self.steps(buffer), self.runner, idle=lambda: self._wait(buffer))
        except torch.OutOfMemoryError as exc:
            raise OutOfMemoryError("GPU out of memory: lower the max pixels per frame (--max-pixels), "
                                   "shorten answers, or close other GPU programs") from exc
        finally:
            self._buffer = None
            if previous is not None:
                torch.cuda.set_stream(previous)

    def steps(self, buffer: RingBuffer) -> Iterator:
        """The session's work on `buffer` as a generator of events, model requests and IDLE (see
        engine/session/steps.py), until the buffer is closed and drained (after keep_open(): until
        stop()), or stop()."""
        self._buffer = buffer
        self._started = time.monotonic()
        cfg = self.config
        ended = False
        while True:
            yield from self._apply_commands()
            if self._stopped:
                return
            prepared, self._ahead = self._ahead, None
            closed = buffer.closed  # before the take: a buffer closed by then gave the take its last frames
            chunk = prepared.chunk if prepared else self.frames.take(buffer, cfg.live, cfg.max_backlog_s)
            if chunk is not None:
                yield from self._chunk_steps(chunk, buffer, prepared, look_ahead=True)
                continue
            if closed:
                if buffer.error is not None:
                    raise buffer.error
                if not ended:
                    yield StreamEnded(self.frames.next_time)
                    ended = True
                if not self._keep_open:
                    return
            yield IDLE  # for frames, or after the end (keep_open) for questions until stop()

    @staticmethod
    def _wait(buffer: RingBuffer) -> None:
        latest = buffer.latest()
        buffer.wait(timeout=0.5, newer_than=latest.timestamp if latest else None)

    def _apply_commands(self) -> Iterator[Event]:
        while True:
            try:
                kind, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "ask":
                self._take_question()
            if self._stopped:  # questions still queued are not answered once the session stops
                continue
            if kind == "ask":
                yield from self._answer_or_note_steps(payload)
            elif kind == "query":
                self.query = payload.strip() or DEFAULT_QUERY
            elif kind == "reset":
                self.clear()
            elif kind == "seek":
                yield self._seek(*payload)

    def clear(self) -> None:
        """Forget the conversation; the next chunk starts a new one at the current video time."""
        self.runner.reset()
        self.sampler.reset()
        self.state.reset()
        self.context.clear()
        if self.recall is not None:
            self.recall.memory.clear()
        self.frames.restart()
        if self._ahead is not None and self._side is not None:
            torch.cuda.current_stream(self.device).wait_stream(self._side)  # its buffers may be in flight
        self._ahead = None  # its frames belonged to the conversation being dropped
        if self.trace is not None:
            self.trace.clear()

    def _seek(self, seconds: float, reposition: Callable[[float], object] | None) -> Seek:
        self.clear()
        if self._buffer is not None:
            self._buffer.clear()  # frees a source blocked on a full buffer, so it can take the seek
        if reposition is not None:
            reposition(seconds)
        self.frames.next_time = seconds
        return Seek(seconds)

    # -- one chunk -------------------------------------------------------------------------
    def _sync(self) -> float:
        """Wait for this stream's work (not the side stream's) and read the clock."""
        if self._timed and self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return time.perf_counter()

    def _prepare(self, chunk: Chunk) -> Iterator:
        """Preprocess a chunk and ask for its visual embeddings now, timing each stage. Returns a PreparedChunk."""
        cfg = self.config
        t0 = self._sync()
        video = preprocess_frames(chunk.frames, self.device, cfg.max_pixels, cfg.min_pixels)
        t1 = self._sync()
        embeds = yield Encode(video)
        t2 = self._sync()
        return PreparedChunk(chunk, video, embeds, (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    def _look_ahead(self, buffer: RingBuffer | None) -> None:
        """When the next chunk's frames are already here (file narration, catching up), start its
        preprocessing and vision on the side stream, overlapping this chunk's decode."""
        if self._side is None or buffer is None or self._ahead is not None:
            return
        chunk = self.frames.take(buffer, self.config.live, self.config.max_backlog_s)
        if chunk is None:
            return
        cfg = self.config
        marks = tuple(torch.cuda.Event(enable_timing=True) for _ in range(3))
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            marks[0].record()
            video = preprocess_frames(chunk.frames, self.device, cfg.max_pixels, cfg.min_pixels)
            marks[1].record()
            embeds = self.runner.encode_video(video)
            marks[2].record()
        self._ahead = PreparedChunk(chunk, video, embeds, marks=marks)

    def process_chunk(self, chunk: Chunk, buffer: RingBuffer | None = None) -> Iterator[Event]:
        """One chunk, now, on this session's runner: its events."""
        return drive(self._chunk_steps(chunk, buffer), self.runner)

    def _chunk_steps(self, chunk: Chunk, buffer: RingBuffer | None = None, prepared: PreparedChunk | None = None,
                     look_ahead: bool = False) -> Iterator:
        """One chunk: visual embeddings (asked for now, or made earlier by the look-ahead), prefill,
        decode, events. With `look_ahead` (the run loop), the next chunk's vision may start during decode."""
        cfg = self.config
        prepared = prepared or (yield from self._prepare(chunk))
        hidden_ms = prepared.wait(self.device)
        video, embeds, vision_ms = prepared.video, prepared.embeds, prepared.vision_ms
        t2 = self._sync()
        compactions = self.state.compactions
        turn = yield from self._turn_with_room(lambda: self._chunk_turn(chunk, video), cfg.max_new_tokens,
                                               chunk.start)
        if self.state.compactions != compactions:
            t2 = self._sync()  # the stall is reported by the Compaction event, not as prefill
        plain = self._plain_turn()
        grid = video.grid
        first = yield from self._prefill(turn, [grid], embeds, self._first(True, cfg.max_new_tokens))
        if look_ahead:
            self._look_ahead(buffer)  # its CPU work overlaps this prefill, its GPU work the decode
        self.state.query_sent = self.query
        t3 = self._sync()
        tokens = yield from self._reply(first, cfg.max_new_tokens, commentary=True)
        t4 = self._sync()
        text = self._text(tokens)
        self._remember(chunk, video, turn if plain else None, embeds, tokens, text)
        yield Commentary(chunk.start, chunk.end, text, chunk.index)
        lag = self._lag_ms(chunk, buffer)
        yield Stats(chunk.index, chunk.start, chunk.end, prepared.preprocess_ms, vision_ms, (t3 - t2) * 1e3,
                    (t4 - t3) * 1e3, len(tokens), self.runner.length, cfg.kv_budget, lag,
                    buffer.dropped if buffer is not None else 0, self.frames.skipped, self.state.compactions,
                    hidden_ms, *self._memory_use())

    def _memory_use(self) -> tuple[int, float]:
        """Key frames and MB of visual memory in use."""
        return (len(self.recall.memory), self.recall.memory.mb) if self.recall else (0, 0.0)

    def _lag_ms(self, chunk: Chunk, buffer: RingBuffer | None) -> float:
        """Live: how far the chunk's end trails the newest frame. Not live (a file read ahead into the
        buffer): how far the narration trails real time since the run started; 0 = keeping up."""
        if self.config.live:
            latest = buffer.latest() if buffer is not None else None
            return max(0.0, latest.timestamp - chunk.end) * 1000 if latest else 0.0
        return max(0.0, time.monotonic() - self._started - chunk.end) * 1000

    def _chunk_turn(self, chunk: Chunk, video: VideoInputs) -> list[int]:
        """The chunk's user turn: with the system prompt and opening if the cache is empty, with the
        query only when it changed."""
        first = not self.state.tokens
        if first:
            query = self.context.opening(self.query)
        else:
            query = self.query if self.query != self.state.query_sent else None
        return self.prompt.chunk_turn(chunk.start, chunk.end, video.num_tokens, query, first=first)

    def _plain_turn(self) -> bool:
        """Whether the chunk turn just built is plain (no system prompt, no query): the form a
        compaction re-uses for the chunk."""
        return bool(self.state.tokens) and self.query == self.state.query_sent

    def _remember(self, chunk: Chunk, video: VideoInputs, plain: list[int] | None, embeds: torch.Tensor,
                  reply: list[int], text: str) -> None:
        """Keep the chunk in the video window (a compaction re-prefills it from there, without the
        vision tower) and its comment in the text memory."""
        if plain is None:
            plain = self.prompt.chunk_turn(chunk.start, chunk.end, video.num_tokens, None, first=False)
        grid = video.grid
        thumb = thumbnail(chunk.frames[-1].image) if self.recall is not None else None
        self.context.window.add(KeptChunk(chunk.index, chunk.start, chunk.end, plain, grid, embeds, reply, thumb))
        self.context.memory.add(chunk.start, text, chunk.index)

    def _segment(self, turn: list[int]) -> list[int]:
        """The pending token, the tokens closing its turn, then the new turn."""
        pending = self.state.pending
        head = [] if pending is None else [pending] + self.prompt.closing(pending)
        return head + turn

    def _prefill(self, turn: list[int], grids: list[tuple[int, int, int]], embeds: torch.Tensor | None,
                 first: Choice | None = None) -> Iterator:
        """Ask for the segment (pending token, closing tokens, `turn`) to be prefilled. Returns its
        last logits or, with `first`, the reply's first token picked from them by the driver (an
        int, or a 0-d device tensor not read yet)."""
        ids = self._segment(turn)
        if self.config.positions == "demo" and self.state.tokens:
            positions, next_pos = demo_positions(len(ids), self.state.next_pos)
        else:
            positions, next_pos = segment_positions(ids, grids, self.state.next_pos, self.prompt.ids.video_pad,
                                                    self._merge)
        ids_t = upload(ids, self.device)  # no wait for the GPU: the core's steps run on meanwhile
        seen = None
        if first is not None:  # the driver's pick sees the segment, as a pick after the prefill would
            seen = self.sampler.seen.clone()
            self.sampler.observe(ids_t)
        try:
            result = yield Prefill(ids_t, upload(positions, self.device), embeds, ids, first, next_pos)
        except Exception:  # (closed at the yield: nothing to restore)
            if seen is not None:
                self.sampler.seen.copy_(seen)  # (a recall that ran out of memory retries with fewer frames)
            raise
        self.state.tokens.extend(ids)
        self.state.next_pos, self.state.pending = next_pos, None
        if first is None:  # the session picks from `result`, after the segment is seen
            self.sampler.observe(ids_t)
            self._record(result)
        return result

    def _record(self, logits: torch.Tensor) -> None:
        if self.trace is not None:
            self.trace.append((len(self.state.tokens) - 1, logits.detach().float().cpu()))

    def _text(self, tokens: list[int]) -> str:
        ids = self.prompt.ids
        known = len(self.prompt.tokenizer)  # the embedding table is padded past the tokenizer (152064 > 151657)
        kept = [t for t in tokens if t not in ids.stops and t < known]
        text = self.prompt.tokenizer.decode(kept, skip_special_tokens=True)
        text = "".join(c for c in text if c.isprintable() or c == "\n")  # no control bytes in subtitles
        return text.removesuffix(STREAM_CONTINUES).strip()

    @property
    def conversation_ids(self) -> list[int]:
        """Token ids of the conversation so far (cache plus the pending token)."""
        pending = [] if self.state.pending is None else [self.state.pending]
        return self.state.tokens + pending
