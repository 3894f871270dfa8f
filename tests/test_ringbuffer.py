"""RingBuffer under real threads: exact drop accounting, backpressure, and consumer wake-ups."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.capture.frames import Frame, RingBuffer

_IMAGE = np.zeros((2, 2, 3), np.uint8)  # shared: the buffer never copies or touches pixels


def frame(t: float) -> Frame:
    return Frame(_IMAGE, float(t))


class Consumer(threading.Thread):
    """Drains a buffer like the engine does: wait -> snapshot -> discard what it has taken.
    `consumed` counts what discard_before removed, which is atomic with respect to drops."""

    def __init__(self, buffer: RingBuffer):
        super().__init__(daemon=True)
        self.buffer = buffer
        self.seen: list[float] = []
        self.consumed = 0
        self.failure: str | None = None

    def run(self) -> None:
        last = -1.0
        while True:
            if not self.buffer.wait(timeout=10.0, newer_than=last):
                self.failure = "wait() timed out with the producer still running"
                return
            new = [f.timestamp for f in self.buffer.snapshot() if f.timestamp > last]
            self.seen += new
            last = new[-1] if new else last
            self.consumed += self.buffer.discard_before(last + 0.5)
            if self.buffer.closed and len(self.buffer) == 0:
                return


def run_producer_consumer(buffer: RingBuffer, count: int, block: bool, prefill: int = 0) -> Consumer:
    for t in range(prefill):  # before the consumer runs: exactly prefill - capacity drops
        buffer.put(frame(t))
    consumer = Consumer(buffer)
    consumer.start()
    for t in range(prefill, count):
        assert buffer.put(frame(t), block=block, timeout=10.0)
    buffer.close()
    consumer.join(timeout=20.0)
    assert not consumer.is_alive() and consumer.failure is None, consumer.failure
    return consumer


def test_concurrent_nonblocking_put_counts_every_drop():
    buffer, count = RingBuffer(capacity=4), 5000
    consumer = run_producer_consumer(buffer, count, block=False, prefill=10)
    assert buffer.pushed == count
    assert consumer.consumed + buffer.dropped == count  # every frame was either taken or counted as dropped
    assert buffer.dropped >= 6  # the prefill alone overflowed by 6
    assert consumer.seen == sorted(set(consumer.seen))  # strictly increasing, no frame seen twice
    assert len(consumer.seen) >= consumer.consumed  # nothing was discarded unseen
    assert consumer.seen[-1] == count - 1  # the newest frame always survives


def test_blocking_put_never_drops_and_keeps_order():
    buffer, count = RingBuffer(capacity=2), 2000
    consumer = run_producer_consumer(buffer, count, block=True)
    assert buffer.dropped == 0
    assert consumer.seen == [float(t) for t in range(count)]


def test_blocking_put_times_out_when_full_and_stops_when_closed():
    buffer = RingBuffer(capacity=1)
    assert buffer.put(frame(0), block=True)
    assert not buffer.put(frame(1), block=True, timeout=0.01)  # full, nobody consuming
    buffer.close()
    assert not buffer.put(frame(2), block=True, timeout=10.0)  # returns at once: the stream is over
    assert [f.timestamp for f in buffer.snapshot()] == [0.0] and buffer.dropped == 0


def wait_in_thread(buffer: RingBuffer, **kwargs) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(buffer.wait(**kwargs)), daemon=True)
    thread.start()
    return thread, result


def test_close_wakes_a_waiting_consumer_and_carries_the_error():
    buffer = RingBuffer(capacity=4)
    thread, result = wait_in_thread(buffer, timeout=30.0)
    error = RuntimeError("camera unplugged")
    buffer.close(error)
    thread.join(timeout=10.0)
    assert result == [True]  # True: woken by close, not by the 30 s timeout (which returns False)
    assert buffer.closed and buffer.error is error
    buffer.close(RuntimeError("later"))
    assert buffer.error is error  # the first error is the one reported


def test_wake_interrupts_wait_without_closing():
    buffer = RingBuffer(capacity=4)
    thread, result = wait_in_thread(buffer, timeout=30.0)
    while thread.is_alive():  # wake() only affects waits already in progress: repeat until it lands
        buffer.wake()
        thread.join(timeout=0.05)
    assert result == [True]
    assert not buffer.closed and len(buffer) == 0


def test_wait_newer_than_ignores_old_frames_until_a_new_one_arrives():
    buffer = RingBuffer(capacity=4)
    buffer.put(frame(1.0))
    assert not buffer.wait(timeout=0.01, newer_than=1.0)  # only an already-seen frame
    thread, result = wait_in_thread(buffer, timeout=30.0, newer_than=1.0)
    buffer.put(frame(2.0))
    thread.join(timeout=10.0)
    assert result == [True]
    assert buffer.latest().timestamp == 2.0


def test_discard_before_and_clear():
    buffer = RingBuffer(capacity=8)
    for t in range(5):
        buffer.put(frame(t))
    assert buffer.discard_before(3.0) == 3
    assert [f.timestamp for f in buffer.snapshot()] == [3.0, 4.0]
    buffer.clear()
    assert len(buffer) == 0 and buffer.latest() is None and buffer.dropped == 0


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.uint8), np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 4), np.uint8)])
def test_frame_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError):
        Frame(bad, 0.0)


def test_byte_bound_holds_at_most_max_bytes_but_always_min_frames():
    big = np.zeros((100, 100, 3), np.uint8)  # 30,000 bytes
    buffer = RingBuffer(64, max_bytes=100_000, min_frames=4)
    for t in range(10):
        assert buffer.put(Frame(big, float(t)))
    # 4 frames (120,000 bytes) exceed the bound, but a chunk needs them: min_frames wins
    assert len(buffer) == 4 and buffer.nbytes == 120_000 and buffer.dropped == 6
    assert [f.timestamp for f in buffer.snapshot()] == [6.0, 7.0, 8.0, 9.0]
    assert not buffer.put(Frame(big, 10.0), block=True, timeout=0.05)  # a file source waits instead
    buffer.discard_before(8.0)
    assert buffer.nbytes == 60_000 and buffer.put(Frame(big, 10.0), block=True, timeout=0.05)
    buffer.clear()
    assert buffer.nbytes == 0
