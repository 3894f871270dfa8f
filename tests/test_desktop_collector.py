"""The desktop app collects Python's cyclic garbage on the GUI thread only: a cycle holding a Qt
object must never be destroyed by a collection that the engine or the loader thread triggered."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from PySide6.QtCore import QObject

from desktop_app.collector import GuiThreadCollector, collect_on_gui_thread


class Cyclic:
    def __init__(self):
        self.me = self


@pytest.fixture
def collections():
    """The thread of every collection while the test runs."""
    threads: list[int] = []

    def note(phase, info):
        if phase == "start":
            threads.append(threading.get_ident())

    gc.callbacks.append(note)
    try:
        yield threads
    finally:
        gc.callbacks.remove(note)


@pytest.fixture
def collector(qtbot):
    parent = QObject()
    installed = GuiThreadCollector(parent, tick_ms=10)
    try:
        yield installed
    finally:
        installed.uninstall()
        gc.enable()


def test_garbage_made_on_a_worker_is_collected_on_the_gui_thread(collector, collections):
    assert not gc.isenabled()
    made: list[weakref.ref] = []

    def worker():  # well past the youngest generation's threshold: CPython would collect here
        for _ in range(5 * gc.get_threshold()[0]):
            made.append(weakref.ref(Cyclic()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert collections == [] and all(ref() is not None for ref in made)  # nothing collected on the worker
    assert collector.tick() is not None
    assert collections and set(collections) == {threading.get_ident()}
    assert all(ref() is None for ref in made)


def test_the_timer_collects_once_the_counts_pass_their_thresholds(collector, collections, qtbot):
    while collector.tick() is not None:  # from counts below the thresholds
        pass
    garbage = [weakref.ref(Cyclic()) for _ in range(2 * gc.get_threshold()[0])]
    qtbot.waitUntil(lambda: all(ref() is None for ref in garbage), timeout=10_000)
    assert set(collections) == {threading.get_ident()}


def test_quitting_gives_automatic_collection_back(qtbot):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    was = gc.isenabled()
    installed = collect_on_gui_thread(app)
    try:
        assert not gc.isenabled()
        app.aboutToQuit.emit()
        assert gc.isenabled() == was
    finally:
        installed.uninstall()
        app.aboutToQuit.disconnect(installed.uninstall)
        installed.deleteLater()
        gc.enable()
