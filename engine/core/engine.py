"""The engine core: many live sessions on one model, their model work batched (vLLM's
`EngineCore.step`, for bounded video sessions).

A session is per-stream state (engine/session/session.py): its work is a generator that yields
events, model requests and IDLE. Each `step` advances every session that can go on to its next
request, then runs the requests of all sessions as few batched launches (engine/core/batched.py):
one decode step for every decoding session, prefill pieces in deadline order under a token
budget, vision of every pending chunk. Sessions live in slabs of one KV pool sized for
`sessions`; a live stream that would push the others past real time is refused.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from engine import flags
from engine.capture.frames import RingBuffer
from engine.defaults import KV_BUDGET
from engine.errors import LiveCCError, OutOfMemoryError
from engine.model.loading import LoadedModel
from engine.model.memory_plan import GiB, ModelShape, free_memory
from engine.session.config import SessionConfig
from engine.session.events import Answer, Commentary, Event
from engine.session.session import StreamingSession
from engine.session.steps import IDLE, Decode, Encode, Prefill

from .batched import BatchedRunner, Piece
from .kv import KVPool, Slab
from .lookahead import Lookahead
from .scheduler import (CAPTURE_TO_CAPTION_S, STEP_TOKENS, BusyError, EngineStopped, Load, PrefillJob, StepClock,
                        guarded, hand, plan_prefill)

VISION_BATCH = 32  # chunks through the vision tower in one step at most
CACHE_MARGIN = 8  # slab tokens past the budget (a compaction keeps the cache within the budget)
WORK_BYTES = 4 * GiB  # beside the pool: a step's activations (a vision batch, prefill pieces: under 3 GB at
# peak with 32 streams on an H100), the graphs' shared memory pool and the allocator's slack
_END = object()


@dataclass
class Lane:
    """One session in the core, and what it waits for."""

    session: StreamingSession
    slab: Slab
    steps: Iterator
    on_event: Callable[[Event], None]
    on_end: Callable[[BaseException | None], None]
    waiting: object = None  # the request being served, IDLE, or None: ready to go on
    result: object = None
    error: BaseException | None = None
    poked: bool = True  # a frame or a command arrived since it went idle
    deadline: float | None = None
    job: PrefillJob | None = None
    ended: bool = False
    row: object = None  # the decode row (lookahead.Row) whose token it waits for
    ahead: object = None  # the row run ahead for it, until it takes that row or asks for another

    def resolve(self, result=None, error: BaseException | None = None) -> None:
        self.waiting, self.result, self.error, self.job = None, result, error, None


class Stream:
    """A front end's handle on one session of the core: commands in, events out."""

    def __init__(self, core: "EngineCore", session: StreamingSession):
        self.core, self.session = core, session
        self._events: queue.SimpleQueue = queue.SimpleQueue()

    def ask(self, question: str) -> None:
        self.session.ask(question)

    def set_query(self, text: str) -> None:
        self.session.set_query(text)

    def reset(self) -> None:
        self.session.reset()

    def seek(self, seconds: float, reposition=None) -> None:
        self.session.seek(seconds, reposition)

    def stop(self) -> None:
        self.session.stop()

    def put(self, event: Event) -> None:
        self._events.put(event)

    def end(self, error: BaseException | None) -> None:
        self._events.put((_END, error))

    def events(self) -> Iterator[Event]:
        """The session's events until it ends (re-raising its error), for a consumer thread."""
        while True:
            item = self._events.get()
            if isinstance(item, tuple) and item and item[0] is _END:
                if item[1] is not None:
                    raise item[1]
                return
            yield item


def check_room(loaded: LoadedModel, sessions: int, slab_tokens: int) -> None:
    """Refuse, in one line, a pool of `sessions` slabs that the GPU's free memory cannot hold (beside
    the weights, already loaded, and a step's work); the CPU has no plan."""
    free = free_memory(loaded.device)
    if free is None:
        return
    each = ModelShape.from_config(loaded.model.config).session_bytes(slab_tokens)
    fit = max(0, int((free - WORK_BYTES) // each) - 1)  # the pool's scratch slab takes one
    if sessions > fit:
        raise OutOfMemoryError(f"{sessions} sessions of {slab_tokens} KV tokens need {sessions * each / GiB:.1f} GB "
                               f"and {free / GiB:.1f} GB of GPU memory is free: at most {fit} fit",
                               f"use at most {fit} sessions, a lower --kv-budget, or --quantize int4")


class EngineCore:
    """Sessions of one loaded model, stepped together."""

    def __init__(self, loaded: LoadedModel, sessions: int = 8, kv_budget: int = KV_BUDGET,
                 step_tokens: int = STEP_TOKENS):
        self.loaded, self.kv_budget, self.step_tokens = loaded, kv_budget, step_tokens
        check_room(loaded, sessions, kv_budget + CACHE_MARGIN)
        self.pool = KVPool.for_model(loaded.model, kv_budget + CACHE_MARGIN, sessions)
        self.runner = BatchedRunner(loaded.model, self.pool)
        plan = getattr(loaded, "plan", None)
        if plan is not None and not plan.prefill_graphs:
            self.runner.drop_prefill_graphs()  # the card has no room for their memory
        if not flags.get("LIVECC_NO_WARM_START"):
            try:
                self.runner.warm_up()  # the graph captures the first streams would wait for, now
            except torch.OutOfMemoryError:
                raise OutOfMemoryError(f"the GPU ran out of memory while the engine core of {sessions} sessions "
                                       "captured its CUDA graphs", "use fewer sessions, a lower --kv-budget or "
                                       "--quantize int4 (LIVECC_NO_WARM_START=1 captures them when first used)"
                                       ) from None
        self.lookahead = Lookahead(self.runner)
        self.load = Load()
        self.clock = StepClock(self.runner.device, self.load)
        self.lanes: list[Lane] = []
        self._incoming: list[Lane] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._failed: BaseException | None = None  # what ended the engine thread: no session opens after it

    # -- sessions (any thread) --------------------------------------------------------------
    def open(self, buffer: RingBuffer, config: SessionConfig | None = None,
             on_event: Callable[[Event], None] | None = None,
             on_end: Callable[[BaseException | None], None] | None = None) -> Stream:
        """Add a session reading `buffer`. Its events go to `on_event` (called on the engine thread)
        or, without it, to the stream's `events()`. Raises PoolFullError or BusyError when it does not fit."""
        config = self._fitted(config or SessionConfig())
        with self._lock:
            if self._failed is not None:
                raise EngineStopped(f"the engine stopped ({self._failed!r})", "restart it; the log has the error")
            live = sum(lane.session.config.live for lane in self.lanes + self._incoming)
            if config.live and not self.load.admits(live):
                raise BusyError(f"{self.load.describe(live)}: one more would fall behind real time",
                                "try again later, or use another GPU")
            slab = self.pool.take()
        try:
            session = StreamingSession(self.loaded, config, runner=slab, overlap=False, timed=False)
        except BaseException:
            with self._lock:
                self.pool.give(slab)
            raise
        stream = Stream(self, session)
        lane = Lane(session, slab, session.steps(buffer), on_event or stream.put, on_end or stream.end)
        buffer.listen(lambda: self._poke(lane))
        with self._lock:
            self._incoming.append(lane)
        self._wake.set()
        return stream

    def _fitted(self, config: SessionConfig) -> SessionConfig:
        if config.kv_budget <= self.kv_budget:
            return config
        try:
            return replace(config, kv_budget=self.kv_budget)
        except ValueError as exc:
            raise LiveCCError(f"the engine's sessions hold {self.kv_budget} tokens, too few for these settings "
                              f"({exc})", "lower --max-answer-tokens or --memory-tokens") from None

    def _poke(self, lane: Lane) -> None:
        lane.poked = True
        self._wake.set()

    @property
    def sessions(self) -> int:
        with self._lock:
            return len(self.lanes) + len(self._incoming)

    # -- the loop (the engine thread) ---------------------------------------------------------
    def step(self) -> bool:
        """Advance every session that can go on, then run their requests batched. False when
        there was nothing to do (every session waits for frames or commands)."""
        with self._lock:
            self.lanes += self._incoming
            self._incoming.clear()
        ready = [lane for lane in self.lanes if lane.waiting is None or (lane.waiting is IDLE and lane.poked)]
        # Lanes handed a token go first: their Python runs while the GPU finishes the last step's
        # prefill and vision; a lane handed logits or embeddings may read the GPU, which waits for it.
        for lane in sorted(ready, key=lambda lane: isinstance(lane.result, torch.Tensor)):
            self._advance(lane)
        ran = self._run_requests()
        self._reap()
        return bool(ready) or ran

    def step_or_wait(self) -> bool:
        """One step; when it found nothing to do, block until a buffer or a command pokes a session
        (for a caller that steps the core in its own loop). Returns what step() returned."""
        self._wake.clear()  # before the step: a poke that comes during it is not lost
        if self.step():
            return True
        self._wake.wait(timeout=0.5)  # the timeout is a safety net
        return False

    def run_until_done(self) -> None:
        """Step in this thread until every session opened so far has ended."""
        while self.sessions:
            self.step_or_wait()

    def start(self) -> None:
        """Step on a background engine thread until close() (for front ends that stay open)."""
        self._thread = threading.Thread(target=self._serve, name="livecc-engine-core", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the background engine thread (start()) is stepping."""
        return self._thread is not None and self._thread.is_alive()

    def _serve(self) -> None:
        try:
            while not self._closing:
                self.step_or_wait()
        except BaseException as exc:  # the engine itself failed: every session ends with it, none hangs
            with self._lock:
                self._failed = exc
                lanes = self.lanes + self._incoming
            for lane in lanes:
                lane.session.stop()
                self._end(lane, exc)
            raise

    def close(self) -> None:
        """Stop every session and the engine thread; a session that has not ended by then ends here."""
        with self._lock:
            lanes = self.lanes + self._incoming
        for lane in lanes:
            lane.session.stop()
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self.lanes += self._incoming
            self._incoming.clear()
        for lane in self.lanes:
            if not lane.ended:  # stopped, but not stepped since
                lane.steps.close()
                self._end(lane, None)
        self._reap()
        self.clock.settle(wait=True)  # the last steps' GPU time, for a caller reading `load` now

    def _advance(self, lane: Lane) -> None:
        """Run the session's generator to its next request or IDLE, delivering its events."""
        send, error = lane.result, lane.error
        lane.result, lane.error, lane.poked = None, None, False
        while True:
            try:
                item = lane.steps.throw(error) if error is not None else lane.steps.send(send)
                send = error = None
                if item is IDLE or isinstance(item, (Encode, Prefill, Decode)):
                    self._wait_on(lane, item)
                    return
                lane.on_event(item)
                if isinstance(item, Commentary) or (isinstance(item, Answer) and item.done):
                    lane.deadline = None
            except StopIteration:
                return self._end(lane, None)
            except Exception as exc:  # noqa: BLE001 - this session's failure, reported to it; the others go on
                lane.steps.close()
                return self._end(lane, exc)

    def _wait_on(self, lane: Lane, item) -> None:
        lane.waiting = item
        self.lookahead.take(lane, item)
        now = time.monotonic()
        if item is IDLE:
            lane.deadline = None
        elif isinstance(item, Encode):
            lane.deadline = now + CAPTURE_TO_CAPTION_S
        elif lane.deadline is None:
            lane.deadline = now  # a question, or a compaction it needs: as soon as possible

    def _end(self, lane: Lane, error: BaseException | None) -> None:
        if isinstance(error, torch.OutOfMemoryError):
            error = OutOfMemoryError("GPU out of memory: serve fewer sessions, lower --max-pixels, or use "
                                     "--quantize int4")
        lane.ended = True
        lane.on_end(error)

    def _reap(self) -> None:
        ended = [lane for lane in self.lanes if lane.ended]
        if not ended:
            return
        self.lanes = [lane for lane in self.lanes if not lane.ended]
        with self._lock:
            for lane in ended:
                self.pool.give(lane.slab)

    # -- batched model work ------------------------------------------------------------------
    def _run_requests(self) -> bool:
        fresh = [lane for lane in self.lanes if Lookahead.fresh(lane)]
        prefills = [lane for lane in self.lanes if isinstance(lane.waiting, Prefill) and lane.row is None]
        encodes = [lane for lane in self.lanes if isinstance(lane.waiting, Encode)][:VISION_BATCH]
        if not (fresh or prefills or encodes or self.lookahead.pending()):
            return False
        mark = self.clock.start()
        chosen = self._plan(prefills, self.step_tokens - self.lookahead.upcoming(fresh))
        pieces = [piece for _, piece in chosen]
        # A piece that ends a Prefill asking for a pick: the reply's first token is picked in the step.
        firsts = [(k, lane) for k, (lane, _) in enumerate(chosen)
                  if lane.job.finished and lane.waiting.choice is not None]
        # Launches this step's decode and prefill pieces, in one pass; reads the last step's picks.
        unread, prefilled = self.lookahead.step(fresh, pieces, firsts)
        self._resolve_prefill(chosen, prefilled)
        if encodes:  # after the pass, which the sessions' next tokens wait for
            hand(encodes, guarded(lambda: self.runner.encode([lane.waiting.video for lane in encodes])))
        self.clock.stop(mark)
        if unread is not None:
            self.lookahead.collect(unread)  # a step that cannot be run ahead of: read it now
        return True

    def _plan(self, lanes: list[Lane], budget: int) -> list[tuple[Lane, Piece]]:
        """The prefill pieces this step runs, each with its lane, earliest deadline first, within
        `budget` tokens. A piece its slab cannot hold fails its own session here, before it could
        fail a batch."""
        video_token = self.loaded.model.config.video_token_id
        for lane in lanes:
            if lane.job is None:
                lane.job = PrefillJob(lane.slab, lane.waiting, lane.deadline or time.monotonic(), video_token)
        owner = {id(lane.job): lane for lane in lanes}
        chosen = []
        for job, piece in plan_prefill([lane.job for lane in lanes], budget):
            error = guarded(lambda: piece.slab.room_for(piece.ids.numel()))
            if error is None:
                chosen.append((owner[id(job)], piece))
            else:
                owner[id(job)].resolve(error=error)
        return chosen

    @staticmethod
    def _resolve_prefill(chosen: list[tuple[Lane, Piece]], result) -> None:
        """Hand each lane whose prefill is done its last logits row (a lane that asked for a pick gets
        it from its row of the step), or the step's error to every lane that had a piece in it."""
        for k, (lane, _) in enumerate(chosen):
            if isinstance(result, BaseException):
                lane.resolve(error=result)
            elif lane.row is None and lane.job is not None and lane.job.finished:
                lane.resolve(result[k])
