"""The engine core batches sessions without changing them (issue 21, acceptance 1): for every
composition of the batch, each session's tokens equal that session run alone in the core, and the
core with one session equals today's single-stream session."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from engine.capture.frames import Frame, RingBuffer
from engine.core.engine import EngineCore
from engine.core.kv import PoolFullError
from engine.session.events import Answer, Commentary, Compaction, StreamEnded
from engine.session.session import SessionConfig, StreamingSession
from videos import synthetic_frame

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Scenario:
    """One session: its video, its settings, and the commands it gets at observed events."""

    name: str
    seconds: float
    width: int = 112
    height: int = 84
    kv_budget: int = 4096
    start_after: int = 0  # engine steps run before this session opens
    ask_after: dict[int, str] = field(default_factory=dict)  # chunk index -> question asked after its comment
    reset_after: int | None = None
    stop_after: int | None = None
    ignore_eos: bool = False  # every reply then takes its whole token budget

    def config(self) -> SessionConfig:
        return SessionConfig(max_pixels=self.width * self.height, min_pixels=28 * 28, max_new_tokens=6,
                             answer_max_new_tokens=8, kv_budget=self.kv_budget, memory_tokens=32,
                             ignore_eos=self.ignore_eos)

    def buffer(self) -> RingBuffer:
        """Every frame at 2 fps, already there and closed: what the session sees does not depend on timing."""
        n = int(self.seconds * 2)
        buffer = RingBuffer(n + 1)
        shift = sum(map(ord, self.name)) % 7  # each session its own picture
        for i in range(n):
            buffer.put(Frame(synthetic_frame(i * 0.5 + shift, self.width, self.height), i * 0.5))
        buffer.close()
        return buffer


class Record:
    """What a session said, and the commands it is given as its events arrive."""

    def __init__(self, scenario: Scenario):
        self.scenario, self.stream = scenario, None
        self.said: list[tuple] = []
        self.compactions = 0
        self.ended = False
        self.error: BaseException | None = None

    def on_event(self, event) -> None:
        s = self.scenario
        if isinstance(event, Commentary):
            self.said.append(("comment", event.chunk_index, event.text))
            if event.chunk_index in s.ask_after:
                self.stream.ask(s.ask_after[event.chunk_index])
            if event.chunk_index == s.reset_after:
                self.stream.reset()
            if event.chunk_index == s.stop_after:
                self.stream.stop()
        elif isinstance(event, Answer) and event.done:
            self.said.append(("answer", event.question, event.text))
        elif isinstance(event, Compaction):
            self.compactions += 1
        elif isinstance(event, StreamEnded):
            self.said.append(("end",))

    def on_end(self, error) -> None:
        self.ended, self.error = True, error


BATCHES: list[tuple[str, int]] = []  # (what, rows) of every batched call of the last run_core
LAST: dict = {}  # "core": the engine core of the last run_core


def counting(name: str, run):
    def counted(rows, *rest):
        BATCHES.append((name, len(rows)))
        if name == "decode" and len(rest) > 1 and rest[1]:  # prefill pieces carried in the decode pass
            BATCHES.append(("prefill", len(rest[1])))
            BATCHES.append(("mixed", len(rows) + len(rest[1])))
        return run(rows, *rest)
    return counted


def run_core(loaded, scenarios: list[Scenario], sessions: int = 8) -> dict[str, tuple]:
    """Run the scenarios as concurrent sessions of one core; each one's words and final conversation."""
    core = LAST["core"] = EngineCore(loaded, sessions=sessions, kv_budget=4096)
    BATCHES.clear()
    for name in ("decode", "prefill", "encode"):
        setattr(core.runner, name, counting(name, getattr(core.runner, name)))
    records, opened = {}, {}
    pending = sorted(scenarios, key=lambda s: s.start_after)
    steps = 0
    while pending or core.sessions:
        while pending and pending[0].start_after <= steps:
            s = pending.pop(0)
            record = records[s.name] = Record(s)
            record.stream = core.open(s.buffer(), s.config(), record.on_event, record.on_end)
            opened[s.name] = record.stream.session
        core.step()
        steps += 1
    for record in records.values():
        assert record.ended and record.error is None
    return {name: (records[name].said, opened[name].conversation_ids, records[name].compactions) for name in records}


SCENARIOS = [
    Scenario("a", 8.0, ask_after={3: "What is moving?"}),
    Scenario("b", 6.0, width=140, height=112, start_after=3, kv_budget=220),
    Scenario("c", 9.0, start_after=7, kv_budget=260, ask_after={5: "Which colour is it?"}),
    Scenario("d", 7.0, width=84, height=84, start_after=1, reset_after=2),
    Scenario("e", 10.0, start_after=12, stop_after=6),
    Scenario("f", 5.0, width=168, height=112, start_after=2, ask_after={2: "Is it over?"}),
    Scenario("g", 6.0, start_after=20, kv_budget=200),
    Scenario("h", 8.0, width=84, height=112, start_after=5, ask_after={1: "What is it?", 4: "And now?"}),
]


@pytest.fixture(scope="module")
def alone(tiny_loaded) -> dict[str, tuple]:
    """Each scenario in a core of its own (opened at once: when it starts does not matter alone)."""
    return {s.name: run_core(tiny_loaded, [Scenario(**{**s.__dict__, "start_after": 0})])[s.name]
            for s in SCENARIOS}


@pytest.mark.parametrize("names", ["ab", "cdh", "abcdefgh", "efg"])
def test_each_session_says_what_it_says_alone(tiny_loaded, alone, names):
    together = run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names])
    shared = ("decode", "prefill", "encode", "mixed") if len(names) == len(SCENARIOS) else ("decode",)
    for what in shared:  # the sessions really shared launches
        assert max(rows for name, rows in BATCHES if name == what) >= 2, what
    for name in names:
        assert together[name] == alone[name], f"session {name} changed in the batch {names}"


def test_decode_steps_run_ahead_of_the_host_without_changing_a_word(tiny_loaded, alone, monkeypatch):
    """Each step is launched from the last one's picks before the host reads them; the sessions take
    those rows (their replies go on) or leave them (a reply ends), and say what they say alone."""
    names = "adf"
    together = run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names])
    assert LAST["core"].lookahead.taken >= 20  # most tokens of the replies came from rows run ahead
    for name in names:
        assert together[name] == alone[name], name
    monkeypatch.setenv("LIVECC_NO_LOOKAHEAD", "1")
    assert run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names]) == together
    assert LAST["core"].lookahead.taken == 0


def test_no_row_is_run_ahead_past_the_last_token_of_a_reply(tiny_loaded):
    """A reply that ends at its token budget ends where the core knows it will: the step that picks
    its last token runs no row ahead for it (one no session takes, which every step it rode in paid for)."""
    together = run_core(tiny_loaded, [Scenario("p", 8.0, ignore_eos=True),
                                      Scenario("q", 9.0, start_after=2, ignore_eos=True)])
    comments = sum(what == "comment" for said, _, _ in together.values() for what, *_ in said)
    rows = sum(n for what, n in BATCHES if what == "decode")
    assert comments >= 8
    assert rows == 5 * comments  # 6 tokens a reply: the first from the prefill, 5 fed back; none more
    assert LAST["core"].lookahead.taken == rows  # each of them was run ahead (the next test says why)


def test_a_replys_first_token_is_picked_in_its_prefills_step(tiny_loaded, monkeypatch):
    """The core picks a reply's first token from the prefill's last logits in the step that runs the
    prefill, and launches the next step from that pick before the host reads it: no step waits for
    a session to read logits. So every row a comment or an answer feeds was run ahead; when the
    session picks its first token itself (LIVECC_NO_FIRST_PICK=1), the first row of each reply is
    a fresh request. The words are the same either way."""
    scenarios = [Scenario("p", 6.0, ignore_eos=True, ask_after={1: "What is shown?"}),
                 Scenario("q", 7.0, start_after=2, ignore_eos=True)]
    together = run_core(tiny_loaded, scenarios)
    said = [what for said, _, _ in together.values() for what, *_ in said]
    replies, rows = said.count("comment") + said.count("answer"), sum(n for what, n in BATCHES if what == "decode")
    assert said.count("comment") >= 8 and said.count("answer") == 1
    assert rows == 5 * said.count("comment") + 7 * said.count("answer")  # 6 and 8 tokens a reply
    assert LAST["core"].lookahead.taken == rows
    monkeypatch.setenv("LIVECC_NO_FIRST_PICK", "1")
    assert run_core(tiny_loaded, scenarios) == together
    assert LAST["core"].lookahead.taken == rows - replies


def run_failing(loaded, scenarios: list[Scenario], setup) -> dict[str, Record]:
    """The scenarios in one core after `setup(core)`, stepped until every session has ended."""
    core = EngineCore(loaded, sessions=len(scenarios), kv_budget=4096)
    setup(core)
    records = {s.name: Record(s) for s in scenarios}
    for record in records.values():
        record.stream = core.open(record.scenario.buffer(), record.scenario.config(), record.on_event, record.on_end)
    for _ in range(5000):  # a bound, not a wait: a stuck session would keep the core stepping
        if not core.sessions:
            break
        core.step()
    assert core.sessions == 0
    return records


def test_a_failed_step_of_rows_run_ahead_leaves_no_session_waiting(tiny_loaded, alone):
    """A decode step that fails while it holds rows run ahead: those rows are no rows to take (their
    sessions ask again and go on), and no session waits for a step that never ran."""
    ahead_steps, doomed = [], []

    def setup(core):
        decode = core.runner.decode

        def failing(rows, fill=None, pieces=()):
            ahead_steps.append(fill is not None)
            if fill is not None and (ahead_steps.count(True) == 3 or (doomed and rows is doomed[0])):
                doomed[:] = [rows]  # its rows fail again when the step runs them apart from its pieces
                raise RuntimeError("the GPU failed")
            return decode(rows, fill, pieces)

        core.runner.decode = failing

    records = run_failing(tiny_loaded, SCENARIOS[:2], setup)
    assert ahead_steps.count(True) > 3
    for name, record in records.items():
        assert record.ended and record.error is None
        assert record.said == alone[name][0]


@pytest.mark.parametrize("lookahead", [True, False])
def test_a_failed_first_pick_ends_only_the_session_it_was_for(tiny_loaded, alone, monkeypatch, lookahead):
    """A reply's first token is picked with the decode rows' picks of its step. Should that pick
    fail, the error reaches the session the token was for; the sessions decoding in the same step
    pick again alone and go on as they would have (without the lookahead every row is one a
    session asked for, so a failure handed to it would end it)."""
    import engine.core.lookahead as lookahead_module

    if not lookahead:
        monkeypatch.setenv("LIVECC_NO_LOOKAHEAD", "1")

    pick, doomed = lookahead_module.choose_rows, []

    def failing(logits, choices):
        steps = [step for _, _, step in choices]
        if not doomed and 0 in steps and any(steps):  # a first pick among decode rows' picks
            doomed.append(choices[steps.index(0)][0])  # that session's sampler
        if doomed and any(sampler is doomed[0] and step == 0 for sampler, _, step in choices):
            raise RuntimeError("the pick failed")
        return pick(logits, choices)

    monkeypatch.setattr(lookahead_module, "choose_rows", failing)
    records = run_failing(tiny_loaded, SCENARIOS[:2], lambda core: None)
    assert doomed
    for name, record in records.items():
        assert record.ended
        if record.stream.session.sampler is doomed[0]:
            assert "the pick failed" in repr(record.error)
        else:
            assert record.error is None and record.said == alone[name][0]


def test_decode_rows_ride_in_the_prefill_pass_without_changing_a_word(tiny_loaded, alone, monkeypatch):
    """A step with decode rows and prefill pieces runs them as one pass (the rows' linears share the
    pieces' read of the weights); LIVECC_NO_MIXED_STEP=1 runs them apart. The words are the same."""
    names = "abcdh"
    together = run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names])
    mixed = [rows for what, rows in BATCHES if what == "mixed"]
    assert len(mixed) >= 10 and max(mixed) >= 3
    for name in names:
        assert together[name] == alone[name], name
    monkeypatch.setenv("LIVECC_NO_MIXED_STEP", "1")
    assert run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names]) == together
    assert not [rows for what, rows in BATCHES if what == "mixed"]


def test_a_failed_mixed_pass_runs_again_as_two_and_no_session_notices(tiny_loaded, alone):
    """When the one pass of decode rows and prefill pieces fails (say, out of memory), the step runs
    the rows and the pieces apart: a failure there would reach only the sessions it belongs to.
    Here the two passes succeed, and every session says what it says alone."""
    failed = []

    def setup(core):
        decode = core.runner.decode

        def failing(rows, fill=None, pieces=()):
            if pieces and len(failed) < 2:
                failed.append(len(pieces))
                raise torch.OutOfMemoryError("CUDA out of memory")
            return decode(rows, fill, pieces)

        core.runner.decode = failing

    records = run_failing(tiny_loaded, [s for s in SCENARIOS if s.name in "acd"], setup)
    assert len(failed) == 2
    for name, record in records.items():
        assert record.ended and record.error is None, name
        assert record.said == alone[name][0], name


def test_a_piece_its_slab_cannot_hold_fails_only_its_own_session(tiny_loaded, alone):
    """A prefill piece that does not fit its session's slab ends that session with the error, before
    the step's batch runs: the sessions decoding and prefilling beside it go on unchanged."""
    small = {}

    def setup(core):
        take = core.pool.take

        def taking():
            slab = take()
            if not small:  # the first session opened: "a"
                slab.capacity = small["a"] = 40  # less than its first chunk's turn
            return slab

        core.pool.take = taking

    records = run_failing(tiny_loaded, [s for s in SCENARIOS if s.name in "acd"], setup)
    assert isinstance(records["a"].error, RuntimeError) and "KV slab full" in str(records["a"].error)
    for name in "cd":
        assert records[name].ended and records[name].error is None, name
        assert records[name].said == alone[name][0], name


def test_graphed_prefill_pieces_change_no_word(tiny_loaded, alone, monkeypatch):
    """A step's lone piece of a token count seen before goes through the fast runner's piecewise
    prefill graphs, writing into its session's slab (here their steps run eagerly on the same static
    buffers: no CUDA); several pieces stay in one eager pass. Every session says what it says alone.
    (Steps that also decode carry their pieces in the decode pass: here they run apart, so that
    lone pieces come often.)"""
    monkeypatch.setenv("LIVECC_NO_MIXED_STEP", "1")
    from engine.core.batched import BatchedRunner
    from engine.runtime.prefill_graphs import PiecewisePrefill

    init, runs = BatchedRunner.__init__, []

    def graphed(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._prefill_on = True

    def counted(self, *args, **kwargs):
        runs.append(kwargs["slab"])
        return run(self, *args, **kwargs)

    run = PiecewisePrefill.run
    monkeypatch.setattr(BatchedRunner, "__init__", graphed)
    monkeypatch.setattr(PiecewisePrefill, "run", counted)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)  # no pool: nothing is captured
    names = "abcdefgh"
    together = run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names])
    assert len(runs) >= 20 and len(set(runs)) >= 4  # graphed pieces, into several sessions' slabs
    assert max(rows for what, rows in BATCHES if what == "prefill") >= 2  # steps with several pieces
    for name in names:
        assert together[name] == alone[name], f"session {name} changed with graphed prefill pieces"


def test_padded_graphed_passes_change_no_word(tiny_loaded, alone, monkeypatch):
    """A pass of several pieces, or of decode rows with pieces, whose size padded to PASS_BUCKET (32)
    tokens came before runs as piecewise graphs on the fused rows layer (here their steps run eagerly
    on the same static buffers: no CUDA). The padding writes only the scratch slab and is left out
    of every attention and result: every session says what it says alone."""
    from engine.core.batched import PASS_BUCKET, BatchedRunner, PaddedPass

    assert PASS_BUCKET == 32
    init, runs = BatchedRunner.__init__, []

    def graphed(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._pass_on = True

    def counted(self, x, *args):
        runs.append((self.x.shape[1], x.shape[1]))
        return run(self, x, *args)

    run = PaddedPass.run
    monkeypatch.setattr(BatchedRunner, "__init__", graphed)
    monkeypatch.setattr(PaddedPass, "run", counted)
    names = "abcdefgh"
    together = run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names])
    assert len(runs) >= 10 and len({size for size, _ in runs}) >= 2
    assert all(size % 32 == 0 and size - 32 < n <= size for size, n in runs)  # the next multiple of 32 up
    assert sum(n < size for size, n in runs) >= 10  # padded
    assert max(rows for what, rows in BATCHES if what == "mixed") >= 2  # rows with pieces among them
    for name in names:
        assert together[name] == alone[name], f"session {name} changed with padded graphed passes"


@pytest.mark.parametrize("rows", [0, 2])
def test_a_padded_pass_computes_and_writes_what_the_eager_pass_does(tiny_loaded, rows):
    """Two prefill pieces (and `rows` decode rows) through the padded pass and through the eager
    one, from the same random cache: the same logits, the same K and V in every session's slab, and
    the padding's writes in the scratch slab alone."""
    from engine.core.batched import BatchedRunner, Piece
    from engine.core.kv import KVPool

    def run(padded: bool):
        pool = KVPool.for_model(tiny_loaded.model, 256, 4)
        torch.manual_seed(0)
        pool.k.normal_()
        pool.v.normal_()
        runner = BatchedRunner(tiny_loaded.model, pool)
        slabs = [pool.take() for _ in range(4)]
        for slab, length in zip(slabs, (40, 17, 90, 5)):
            slab.length = length
        pieces = [Piece(slab, torch.arange(100, 100 + n), torch.arange(slab.length, slab.length + n).expand(3, n), None, 0)
                  for slab, n in ((slabs[0], 23), (slabs[2], 30))]
        decode = [(slab, 7 + k, slab.length) for k, slab in enumerate(slabs[1::2][:rows])]
        runner._pass_on = padded
        runner._padded(53 + rows)  # seen once: the pass below is made padded, to 64 tokens (2 x PASS_BUCKET)
        logits = runner.decode(decode, None, pieces) if rows else runner.prefill(pieces)
        assert len(runner._passes) == padded
        return logits, pool

    (eager, before), (padded, after) = run(False), run(True)
    torch.testing.assert_close(padded, eager)
    scratch = before.scratch
    torch.testing.assert_close(after.k[:, :scratch], before.k[:, :scratch])
    torch.testing.assert_close(after.v[:, :scratch], before.v[:, :scratch])
    assert not torch.equal(after.v[:, scratch], before.v[:, scratch])  # where the padding went


def test_a_memory_plan_without_room_for_prefill_graphs_keeps_the_core_eager(tiny_loaded, monkeypatch):
    """The plan's choice on a tight card holds for the core's prefill graphs as for a single stream."""
    from types import SimpleNamespace

    from engine.core.batched import BatchedRunner

    init = BatchedRunner.__init__

    def graphed(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._prefill_on = self._pass_on = True  # as on a GPU

    monkeypatch.setattr(BatchedRunner, "__init__", graphed)
    runner = EngineCore(tiny_loaded, sessions=1, kv_budget=1024).runner
    assert runner._prefill_on and runner._pass_on
    monkeypatch.setattr(tiny_loaded, "plan", SimpleNamespace(prefill_graphs=False), raising=False)
    runner = EngineCore(tiny_loaded, sessions=1, kv_budget=1024).runner
    assert not runner._prefill_on and runner._piecewise(40) is None and runner._piecewise(40) is None
    assert not runner._pass_on and runner._padded(100) is None and runner._padded(100) is None


def test_the_scenarios_cover_what_the_issue_lists(alone):
    """Different starts, compactions at different moments, questions mid-stream, a reset, an early end."""
    compacted_at = {name: said for name, (said, _, compactions) in alone.items() if compactions}
    assert len(compacted_at) >= 3
    assert sum(1 for said, _, _ in alone.values() for item in said if item[0] == "answer") >= 5
    assert alone["e"][0][-1][0] == "comment"  # stopped after its 7th comment: no end of stream
    assert len([x for x in alone["e"][0] if x[0] == "comment"]) == 7
    assert all(said[-1] == ("end",) for name, (said, _, _) in alone.items() if name != "e")


def test_one_session_in_the_core_says_what_the_single_stream_session_says(tiny_loaded, alone):
    for s in (SCENARIOS[0], SCENARIOS[2]):
        session = StreamingSession(tiny_loaded, s.config())
        record = Record(s)
        record.stream = session
        for event in session.run(s.buffer()):
            record.on_event(event)
        assert (record.said, session.conversation_ids, record.compactions) == alone[s.name]


def test_a_full_pool_refuses_one_more_session(tiny_loaded):
    core = EngineCore(tiny_loaded, sessions=2, kv_budget=1024)
    first = core.open(Scenario("x", 2.0).buffer(), Scenario("x", 2.0).config())
    core.open(Scenario("y", 2.0).buffer(), Scenario("y", 2.0).config())
    with pytest.raises(PoolFullError, match="all 2 session slots are in use"):
        core.open(Scenario("z", 2.0).buffer(), Scenario("z", 2.0).config())
    first.stop()
    core.run_until_done()
    assert core.pool.free == 2
    core.open(Scenario("z", 2.0).buffer(), Scenario("z", 2.0).config())  # a slot came back


def test_the_pool_is_refused_in_one_line_when_the_gpu_cannot_hold_it(tiny_loaded, monkeypatch):
    import engine.core.engine as core_module
    from engine.errors import OutOfMemoryError
    from engine.model.memory_plan import ModelShape

    each = ModelShape.from_config(tiny_loaded.model.config).session_bytes(1024 + core_module.CACHE_MARGIN)
    monkeypatch.setattr(core_module, "free_memory", lambda device: core_module.WORK_BYTES + int(3.5 * each))  # 2 + scratch
    with pytest.raises(OutOfMemoryError, match="3 sessions of 1032 KV tokens need .* at most 2 fit") as refused:
        EngineCore(tiny_loaded, sessions=3, kv_budget=1024)
    assert "use at most 2 sessions" in str(refused.value) and "\n" not in str(refused.value)
    assert EngineCore(tiny_loaded, sessions=2, kv_budget=1024).pool.slabs == 2


def test_a_session_never_picks_a_video_slot_token(tiny_loaded):
    """A picked <|video_pad|> would be taken for a video slot when a compaction prefills the reply again."""
    session = StreamingSession(tiny_loaded, Scenario("v", 2.0).config())
    pad = session.prompt.ids.video_pad
    logits = torch.zeros(session.sampler.seen.numel())
    logits[pad] = 100.0
    for commentary in (True, False):
        rule = session._select_rule(commentary, session.prompt.ids.stops)
        assert int(session.sampler.choose(logits, rule, 0)) != pad


def test_closing_the_core_ends_every_stream_and_frees_its_slot(tiny_loaded):
    """A live buffer that never closes: its consumer sees the end once the core closes."""
    core = EngineCore(tiny_loaded, sessions=2, kv_budget=1024)
    buffer = RingBuffer(8)
    stream = core.open(buffer, Scenario("w", 1.0).config())
    core.close()  # never started: the session is still waiting to be stepped
    assert list(stream.events()) == []
    assert core.pool.free == 2 and core.sessions == 0
    started = EngineCore(tiny_loaded, sessions=1, kv_budget=1024)
    started.start()
    live = started.open(RingBuffer(8), Scenario("w", 1.0).config())
    started.close()
    assert list(live.events()) == [] and started.pool.free == 1


def test_batched_picks_equal_each_sessions_own_pick():
    """The core picks every decoding session's token in one batch (choose_rows); each pick must be
    the one that session's sampler makes alone: its own seen set, rule, step and banned ids, with
    the ' ...' threshold deciding some rows either way."""
    from engine.session.decoding import SamplingConfig, SelectRule, TokenSampler, choose_rows

    vocab, stream = 50, 7
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, vocab, generator=gen) * 3
    logits[:, stream] = torch.tensor([30.0, 0.0, 2.0, 2.0, 30.0, -1.0])  # confident, unconfident, low
    logits[1, stream] = logits[1].max() + 0.5  # the best, but far from the 0.85 its step asks
    samplers = [TokenSampler(vocab, torch.device("cpu"), SamplingConfig(repetition_penalty=1.3)) for _ in range(6)]
    for i, sampler in enumerate(samplers):
        sampler.observe(torch.randint(0, vocab, (5 + i,), generator=gen))
    commentary = SelectRule(stream, eos_base=0.05, eos_step=0.2, banned=(3, 11))
    rules = [commentary, commentary, commentary, SelectRule(banned=(3,)), SelectRule(), commentary]
    steps = [0, 4, 1, 2, 0, 3]
    choices = list(zip(samplers, rules, steps))
    alone = [int(s.choose(row, rule, step)) for row, (s, rule, step) in zip(logits, choices)]
    assert choose_rows(logits, choices).tolist() == alone
    assert alone[0] == stream and alone[1] != stream  # the threshold decided rows either way
    sampled = [(TokenSampler(vocab, torch.device("cpu"), SamplingConfig(temperature=0.7, seed=1)), SelectRule(), 0)]
    reference = int(TokenSampler(vocab, torch.device("cpu"), SamplingConfig(temperature=0.7, seed=1)).choose(
        logits[0], SelectRule(), 0))
    assert choose_rows(logits[:1], sampled).tolist() == [reference]  # sampling rows keep their own generator


def test_a_warm_start_runs_every_bucket_and_pass_size_first_and_changes_no_word(tiny_loaded, alone, monkeypatch):
    """The warm start (LIVECC_NO_WARM_START=1 turns it off): the core runs the decode step of each row
    bucket and a pass of each padded size (here eager, on the CPU, with the pass graphs said to be
    on) before any stream joins, on its free slabs, and gives them back empty: every session then
    says what it says alone."""
    from engine.core.batched import PASS_BUCKET, BatchedRunner

    init, decoded = BatchedRunner.__init__, []

    def graphed(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._pass_on = True

    def counted(self, rows, fill=None, pieces=()):
        decoded.append((len(rows), sum(p.ids.numel() for p in pieces)))
        return decode(self, rows, fill, pieces)

    decode = BatchedRunner.decode
    monkeypatch.setattr(BatchedRunner, "decode", counted)
    EngineCore(tiny_loaded, sessions=3, kv_budget=256)
    assert decoded == []  # nothing to capture: no graphs on the CPU
    monkeypatch.setattr(BatchedRunner, "__init__", graphed)
    monkeypatch.setenv("LIVECC_NO_WARM_START", "1")
    core = EngineCore(tiny_loaded, sessions=3, kv_budget=256)
    assert decoded == []  # off
    monkeypatch.delenv("LIVECC_NO_WARM_START")
    core = EngineCore(tiny_loaded, sessions=3, kv_budget=256)
    sizes = list(range(PASS_BUCKET, 256 + 1, PASS_BUCKET))  # the slab holds 256 + 8 tokens
    assert [rows for rows, tokens in decoded if not tokens] == [1, 2, 3]  # buckets 1, 2, 4: 3 slabs
    assert sorted({rows + tokens for rows, tokens in decoded if tokens}) == sizes
    assert sorted(core.runner._passes) == sizes  # each size seen twice: its padded pass made
    assert core.pool.free == 3
    names = "adf"
    together = run_core(tiny_loaded, [s for s in SCENARIOS if s.name in names])
    for name in names:
        assert together[name] == alone[name], name


def test_running_out_of_gpu_memory_in_the_warm_start_is_one_clear_error(tiny_loaded, monkeypatch):
    """The warm start's captures take memory before any stream joins: running out there names the
    fixes (as the pool's own check does), not a traceback of the capture."""
    from engine.core.batched import BatchedRunner
    from engine.errors import LiveCCError

    def out_of_memory(self, passes_at_most=8):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(BatchedRunner, "warm_up", out_of_memory)
    with pytest.raises(LiveCCError) as caught:
        EngineCore(tiny_loaded, sessions=3, kv_budget=256)
    assert caught.value.code == "out-of-memory"
    assert "3 sessions" in caught.value.problem and "LIVECC_NO_WARM_START=1" in caught.value.fix
    monkeypatch.setenv("LIVECC_NO_WARM_START", "1")
    EngineCore(tiny_loaded, sessions=3, kv_budget=256)  # off: nothing captured at the start


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_core_whose_engine_thread_failed_ends_its_sessions_and_refuses_new_ones(tiny_loaded, monkeypatch):
    """A session opened after the engine thread died would wait forever for a step: it is refused
    in one line instead, and the sessions it was stepping end with the error."""
    import threading

    from engine.core import EngineStopped

    core = EngineCore(tiny_loaded, sessions=2, kv_budget=1024)
    ended, done = [], threading.Event()
    core.open(Scenario("x", 2.0).buffer(), Scenario("x", 2.0).config(), on_event=lambda event: None,
              on_end=lambda error: (ended.append(error), done.set()))

    def failing():
        raise RuntimeError("the GPU failed")

    monkeypatch.setattr(core, "step", failing)
    core.start()
    assert done.wait(60) and isinstance(ended[0], RuntimeError)
    core._thread.join(60)
    assert not core.running
    with pytest.raises(EngineStopped, match="the engine stopped .*the GPU failed") as refused:
        core.open(Scenario("y", 2.0).buffer(), Scenario("y", 2.0).config())
    assert "\n" not in str(refused.value) and "restart" in str(refused.value)
    core.close()
