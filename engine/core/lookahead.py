"""The engine core's decode steps, one step ahead of the host (vLLM's asynchronous scheduling, for
sessions that pick greedily).

A step's picks stay on the GPU: the next step is launched from them before the host reads them, so
the sessions' Python (reading the picks, stop rules, events, the next chunk's frames) runs while the
GPU decodes. A session that then feeds the pick, as it does until its reply ends, takes the row run
ahead for it; one that stops leaves that row unused: its KV write lies at the slab's length, where
the session's next write lands. A reply's first token is picked the same way, from the last logits
of the prefill piece that ends its turn, in the step that runs the piece. A row that samples or
wants logits is never run ahead: a step that holds one is read before the next is launched.
LIVECC_NO_LOOKAHEAD=1: every step is read at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from engine import flags
from engine.runtime.decode_ops import read_later, upload
from engine.session.decoding import choose_rows
from engine.session.steps import Choice, Decode

from .scheduler import guarded


@dataclass(eq=False)
class Row:
    """One lane's token in a decode step, or the last token of the prefill piece that ends its turn
    (`piece`: its KV is the piece's, and its pick is the reply's first token)."""

    lane: object  # engine.Lane: its slab, its request, resolve()
    position: int  # of the token fed (a piece's row: one before the position its pick is fed at)
    choice: Choice | None
    taken: bool  # the session asked for this row: its own request, or the row run ahead that it took
    token: int | None = None  # None while it is the previous step's pick, not read yet
    source: "Row | None" = None  # the row whose pick this one feeds (a row run ahead)
    piece: bool = False

    @property
    def final(self) -> bool:
        """Its pick ends the reply (its token budget): no session takes a row run ahead of it."""
        return self.choice is not None and self.choice.last is not None and self.choice.step >= self.choice.last


@dataclass(eq=False)
class Flight:
    """A launched decode step, not read yet."""

    rows: list[Row]
    logits: torch.Tensor
    picked: list[int] = field(default_factory=list)  # indices of the rows whose token the core picks
    picks: torch.Tensor | None = None  # those picks, on the device
    read: object = None  # () -> the picks on the host, waiting for their copy only

    @property
    def continues(self) -> bool:
        """Whether every row the sessions asked for may be run ahead (greedy, picked here)."""
        return all(r.choice is not None and r.choice.sampler.config.greedy for r in self.rows if r.taken)


class Lookahead:
    """Launches each decode step and hands the lanes their tokens, a step behind when it can."""

    def __init__(self, runner):
        self.runner = runner
        self.on = not flags.get("LIVECC_NO_LOOKAHEAD")
        self.flight: Flight | None = None  # launched, read at the next step
        self.taken = 0  # rows run ahead that their sessions took

    @staticmethod
    def fresh(lane) -> bool:
        """Whether the lane's Decode request still needs a row (none was run ahead for it)."""
        return isinstance(lane.waiting, Decode) and lane.row is None

    def take(self, lane, request) -> None:
        """Give the lane the row run ahead for it when its new `request` is exactly that row."""
        row, lane.ahead = lane.ahead, None
        if row is None or row.token is None or not isinstance(request, Decode) or request.choice is None:
            return
        want = (row.token, row.position, row.choice.sampler, row.choice.rule, row.choice.step)
        if (request.token, request.position, request.choice.sampler, request.choice.rule, request.choice.step) == want:
            row.taken, lane.row = True, row
            self.taken += 1
            lane.slab.length += 1  # the row wrote at the length it had then, which nothing has moved since

    def pending(self) -> bool:
        return self.flight is not None

    def upcoming(self, fresh: list) -> int:
        """Rows the next step launches at most: the fresh requests and a row run ahead for each pick."""
        flight = self.flight
        ahead = (sum(not flight.rows[i].final for i in flight.picked)
                 if flight is not None and flight.continues and self.on else 0)
        return len(fresh) + ahead

    def step(self, fresh: list, pieces: list = (), firsts: list = ()) -> tuple[Flight | None, object]:
        """Launch one step: a decode row run ahead for every lane the last step may continue, a row
        for each fresh request, and the prefill `pieces` in the same pass (the runner's `carries`);
        `firsts`: (k, lane) for each piece k that ends its lane's Prefill with a choice: its pick
        is made here, as a row of the step. Returns the step to read now, if it cannot be read
        later, and the pieces' logits (pieces, vocab), or the exception their prefill raised (None
        without pieces)."""
        previous, rows, fill = self.flight, [], None
        self.flight = None
        if previous is not None and previous.continues and self.on:
            rows, fill = self._ahead(previous)
        rows += [Row(lane, lane.waiting.position, lane.waiting.choice, True, lane.waiting.token) for lane in fresh]
        launched, prefilled = self._launch(rows, fill, list(pieces), list(firsts))
        if launched is not None and launched.continues and self.on:
            self.flight = launched
            launched = None
        if previous is not None:
            self.collect(previous)
        return launched, prefilled

    def _ahead(self, previous: Flight) -> tuple[list[Row], tuple[list[int], torch.Tensor]]:
        rows, index, source = [], [], []
        for k, i in enumerate(previous.picked):
            row = previous.rows[i]
            slab = row.lane.slab
            if not row.taken or row.lane.ended or row.lane.row is not row or slab.length >= slab.capacity:
                continue  # (a full slab: the session compacts before it asks for another token)
            if row.final:
                continue  # its pick ends the reply: no session would take a row after it
            ahead = Row(row.lane, row.position + 1, replace(row.choice, step=row.choice.step + 1), False, source=row)
            ahead.choice.sampler.seen.index_fill_(0, previous.picks[k:k + 1], True)  # as the session will observe it
            row.lane.ahead = ahead
            index.append(len(rows))
            source.append(k)
            rows.append(ahead)
        if not rows:
            return [], None
        return rows, (index, previous.picks[upload(source, previous.picks.device)])

    def _launch(self, rows: list[Row], fill, pieces: list, firsts: list) -> tuple[Flight | None, object]:
        logits, prefilled = self._run([(r.lane.slab, r.token, r.position) for r in rows], fill, pieces)
        if isinstance(logits, BaseException):
            self._fail(rows, logits)
            rows = []
        ends = [] if isinstance(prefilled, BaseException) else [
            Row(lane, lane.waiting.next_position - 1, lane.waiting.choice, True, piece=True) for _, lane in firsts]
        for r in rows + ends:
            if r.taken:
                r.lane.slab.length += not r.piece  # (a piece's slab moved with the piece)
                r.lane.row = r

        def last() -> torch.Tensor:  # the ends' logits
            return prefilled[upload([k for k, _ in firsts], prefilled.device)]

        try:
            if not ends:
                return (self._picked(rows, logits) if rows else None), prefilled
            return self._picked(rows + ends, torch.cat([logits, last()]) if rows else last()), prefilled
        except Exception as exc:  # noqa: BLE001 - raised in each session, which decides
            if not (rows and ends):
                self._fail(rows + ends, exc)
                return None, prefilled
        # The rows' and the ends' picks failed together: each part picks alone, so a failure reaches
        # only the sessions it belongs to; the ends' picks are read at once (a rare path).
        apart = guarded(lambda: self._picked(ends, last()))
        if isinstance(apart, BaseException):
            self._fail(ends, apart)
        else:
            self.collect(apart)
        flight = guarded(lambda: self._picked(rows, logits))
        if isinstance(flight, BaseException):
            self._fail(rows, flight)
            return None, prefilled
        return flight, prefilled

    @staticmethod
    def _picked(rows: list[Row], logits: torch.Tensor) -> Flight:
        """The step's rows with their logits (rows, vocab), the picks started on the GPU."""
        flight = Flight(rows, logits, [i for i, r in enumerate(rows) if r.choice is not None])
        if flight.picked:
            subset = logits if len(flight.picked) == len(rows) else logits[upload(flight.picked, logits.device)]
            flight.picks = choose_rows(subset, [(r.choice.sampler, r.choice.rule, r.choice.step)
                                                for r in (rows[i] for i in flight.picked)])
            flight.read = read_later(flight.picks)
        return flight

    def _run(self, rows: list, fill, pieces: list) -> tuple[object, object]:
        """The rows' logits and the pieces' (None for a part that is empty), each the exception its
        part raised if it failed: one pass for both when the runner carries pieces with rows;
        should that fail, the two apart, so that a failure reaches only the sessions it belongs to
        (a piece's error never ends a decoding session)."""
        if rows and pieces and self.runner.carries:
            both = guarded(lambda: self.runner.decode(rows, fill, pieces))
            if not isinstance(both, BaseException):
                return both[:len(rows)], both[len(rows):]
        decoded = guarded(lambda: self.runner.decode(rows, fill)) if rows else None
        return decoded, guarded(lambda: self.runner.prefill(pieces)) if pieces else None

    def collect(self, flight: Flight) -> None:
        """Hand each lane that still waits on its row the token picked (one read for all) or its logits."""
        results = list(flight.logits)
        try:
            for i, token in zip(flight.picked, flight.read() if flight.read is not None else []):
                results[i] = token
        except Exception as exc:  # noqa: BLE001 - an asynchronous failure of the step, raised in each session
            self._fail(flight.rows, exc)
            return
        for row, result in zip(flight.rows, results):
            lane = row.lane
            if lane.ahead is not None and lane.ahead.source is row:
                lane.ahead.token = result  # the row run ahead from this one feeds this pick
            if row.taken and lane.row is row:
                lane.row = None
                lane.resolve(result)
            elif lane.ahead is row:
                lane.ahead = None  # run ahead, not taken: the session stopped

    @staticmethod
    def _fail(rows: list[Row], exc: BaseException) -> None:
        """The step failed: each lane waiting on one of its rows gets the error; a row run ahead in it
        is no row to take (its lane would wait on a step that never ran)."""
        for row in rows:
            if row.lane.ahead is row:
                row.lane.ahead = None
            if row.taken and row.lane.row in (row, None):
                row.lane.row = None
                row.lane.resolve(error=exc)
