"""`livecc narrate A B C --out-dir DIR` (issue 21, acceptance 3): many videos as sessions of one engine
core, each writing what narrating it alone writes; a bad video is one line and the others finish;
names that meet are made distinct; options that name one file are refused; Ctrl-C keeps every
printed chunk."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from pathlib import Path

import pytest

from livecc.cli.main import main
from livecc.cli.signals import STOP_SIGNALS
from test_cli import SMALL, parse_srt
from test_sources import faststart
from videos import write_video

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Different lengths, sizes and rates; two of them called clip.mp4 in different folders."""
    root = tmp_path_factory.mktemp("many")
    (root / "one").mkdir()
    (root / "two").mkdir()
    return {"clip": write_video(root / "one" / "clip.mp4", seconds=5, fps=10),
            "clip-2": write_video(root / "two" / "clip.mp4", seconds=3, fps=8, width=200, height=120),
            "long": write_video(root / "long.mp4", seconds=7, fps=10, width=120, height=160)}


@pytest.fixture
def signal_handlers():
    """A stop signal leaves the CLI deaf to the next ones (it only exits after one): give them back."""
    saved = {name: signal.getsignal(getattr(signal, name)) for name in STOP_SIGNALS if hasattr(signal, name)}
    yield
    for name, handler in saved.items():
        signal.signal(getattr(signal, name), handler)


def narrate(*argv, model: Path) -> int:
    return main(["narrate", *map(str, argv), "--model", str(model), *SMALL])


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timings(record: dict) -> dict:
    """A record's deterministic fields: the stage timings and the lag depend on the machine."""
    stats = {k: v for k, v in record.get("stats", {}).items() if not k.endswith("_ms")}
    return {k: v for k, v in record.items() if k != "stats"} | {"stats": stats}


def batched_rows(monkeypatch) -> list[int]:
    """Rows of every batched decode step of the core, recorded as it runs."""
    from engine.core.batched import BatchedRunner

    rows, decode = [], BatchedRunner.decode

    def counted(self, batch, *rest):
        rows.append(len(batch))
        return decode(self, batch, *rest)

    monkeypatch.setattr(BatchedRunner, "decode", counted)
    return rows


def test_each_video_writes_what_it_writes_alone(videos, tiny_model_dir, tmp_path, capsys, monkeypatch):
    rows = batched_rows(monkeypatch)
    out = tmp_path / "out"
    assert narrate(*videos.values(), "--out-dir", out, model=tiny_model_dir) == 0
    together_out, err = capsys.readouterr()
    assert max(rows) >= 2, rows  # the sessions really shared decode steps (clip and long run 3 and 5 chunks)
    assert f"another video is named clip: {videos['clip-2']} writes {out / 'clip-2'}.srt" in err, err
    assert "narrating 3 videos" not in err  # stderr is no terminal: no bar
    for name, video in videos.items():
        alone = tmp_path / "alone" / name
        assert narrate(video, "--srt", f"{alone}.srt", "--vtt", f"{alone}.vtt", "--jsonl", f"{alone}.jsonl",
                       model=tiny_model_dir) == 0
        for suffix in ("srt", "vtt"):
            assert (out / f"{name}.{suffix}").read_bytes() == Path(f"{alone}.{suffix}").read_bytes(), (name, suffix)
        together = records(out / f"{name}.jsonl")
        assert len(together) == 1 + round(video_seconds(video)) - 3
        assert [without_timings(r) for r in together] == [without_timings(r) for r in records(Path(f"{alone}.jsonl"))]
        printed = [line for line in together_out.splitlines() if line.startswith(f"{name} [")]
        assert len(printed) == sum(1 for r in together if r["text"]), name  # every comment, named
    summary = err.strip().splitlines()
    assert summary[-1] == "livecc: 3 videos: 3 narrated", summary
    assert any(line.startswith("livecc: clip-2: 1 chunks, ") for line in summary), summary


def video_seconds(video: Path) -> float:
    from engine.capture.sources import probe_video

    return probe_video(video).duration


def test_a_bad_video_is_one_line_and_the_others_finish(videos, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """A text file, a missing file and a file cut off mid-way, among two good ones; two sessions at
    once, so videos wait for a turn. On a terminal, one bar shows every video."""
    monkeypatch.setattr("livecc.cli.many.stderr_is_terminal", lambda: True)
    notes, missing, cut = tmp_path / "notes.mp4", tmp_path / "missing.mp4", tmp_path / "cut.mp4"
    notes.write_text("this is not a video\n" * 50)
    whole = faststart(write_video(tmp_path / "eight.mp4", seconds=8, fps=10).read_bytes())
    cut.write_bytes(whole[: len(whole) * 3 // 5])  # opens, then ends early
    out = tmp_path / "out"
    argv = [videos["clip"], notes, cut, missing, videos["long"]]
    assert narrate(*argv, "--out-dir", out, "--sessions", "2", model=tiny_model_dir) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in re.split(r"[\r\n]", err) if line.startswith("livecc: error: ")]
    assert len(errors) == 3 and all(any(str(v) in line for line in errors) for v in (notes, cut, missing)), errors
    assert err.strip().splitlines()[-1] == f"livecc: 5 videos: 2 narrated, 3 failed ({notes}, {missing}, {cut})"
    assert len(records(out / "clip.jsonl")) == 3 and len(records(out / "long.jsonl")) == 5
    kept = records(out / "cut.jsonl")  # what was narrated before the file broke off stays
    assert kept and [(a, b) for a, b, _ in parse_srt((out / "cut.srt").read_text())] == \
        [(r["start"], r["end"]) for r in kept if r["text"]]
    assert not (out / "notes.srt").exists() and not (out / "missing.srt").exists()
    assert "narrating 3 videos" in err and re.search(r"clip \d/5s", err), err  # the bar, each running video


def test_names_that_meet_are_made_distinct():
    from livecc.cli.many import output_names

    given = [Path("a/clip.mp4"), Path("b/clip.mp4"), Path("Clip.mkv"), Path("clip-2.mp4"), Path("match.webm")]
    assert output_names(given) == ["clip", "clip-2", "Clip-3", "clip-2-2", "match"]


REFUSED = {
    "two videos, no --out-dir": (["{a}", "{b}"], "needs --out-dir DIR"),
    "--srt with --out-dir": (["{a}", "{b}", "--out-dir", "{out}", "--srt", "{out}/x.srt"], "--srt names one file"),
    "--jsonl with one video": (["{a}", "--out-dir", "{out}", "--jsonl", "{out}/x.jsonl"], "--jsonl names one file"),
    "--server": (["{a}", "{b}", "--out-dir", "{out}", "--server", "ws://localhost:1"], "--server narrates one video"),
    "--speech-wav": (["{a}", "{b}", "--out-dir", "{out}", "--speech-wav", "{out}/x.wav"], "--speech-wav voices one"),
    "the same video twice": (["{a}", "{b}", "{a}", "--out-dir", "{out}"], "is given twice"),
    "--sessions 0": (["{a}", "{b}", "--out-dir", "{out}", "--sessions", "0"], "--sessions 0 must be 1 or more"),
    "--sessions without --out-dir": (["{a}", "--sessions", "2"], "--sessions sets how many"),
    "--realtime, more videos than sessions": (["{a}", "{b}", "--out-dir", "{out}", "--realtime", "--sessions", "1"],
                                              "--realtime plays every video at once"),
    "--out-dir is a file": (["{a}", "{b}", "--out-dir", "{a}"], "is a file"),
}


@pytest.mark.parametrize("argv, says", REFUSED.values(), ids=REFUSED.keys())
def test_options_for_one_video_are_refused_before_the_model_loads(argv, says, videos, tmp_path, capsys, monkeypatch):
    def boom(args):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr("livecc.cli.many.load", boom)
    monkeypatch.setattr("livecc.cli.narrate.load", boom)
    out = tmp_path / "out"
    args = [a.format(a=videos["clip"], b=videos["long"], out=out) for a in argv]
    assert main(["narrate", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error: ") and says in err[0], err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name, says", [("clip.srt", "is not an SRT file"), ("clip.vtt", "is not a WebVTT file"),
                                        ("clip.jsonl", "is not a JSONL file of livecc records")])
def test_files_in_the_out_dir_that_are_not_ours_are_refused_before_the_model_loads(name, says, videos, tmp_path,
                                                                                  capsys, monkeypatch):
    """--out-dir replaced a user's own notes named clip.srt, and found a foreign clip.jsonl only after
    the model loaded (with clip.srt and clip.vtt emptied by then)."""
    monkeypatch.setattr("livecc.cli.many.load", lambda args: pytest.fail("the model loaded first"))
    out = tmp_path / "out"
    out.mkdir()
    notes = out / name
    notes.write_text("my precious notes\n")
    assert main(["narrate", str(videos["clip"]), str(videos["long"]), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert notes.read_text() == "my precious notes\n" and sorted(p.name for p in out.iterdir()) == [name]


def test_one_video_with_out_dir(videos, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert narrate(videos["clip-2"], "--out-dir", out, model=tiny_model_dir) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.srt", "clip.vtt"]
    assert len(records(out / "clip.jsonl")) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "livecc: 1 video: 1 narrated"


def test_a_model_that_does_not_load_is_one_line(videos, tmp_path, capsys):
    argv = ["narrate", str(videos["clip"]), str(videos["long"]), "--out-dir", str(tmp_path / "out"),
            "--model", str(tmp_path / "absent")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error: "), err


def test_realtime_plays_every_video_at_once(tiny_model_dir, tmp_path):
    """Each video paced like a live source, all of them at once: each still gets its commentary."""
    short = [write_video(tmp_path / f"cam{i}.mp4", seconds=4, fps=10) for i in range(2)]
    out = tmp_path / "out"
    assert narrate(*short, "--out-dir", out, "--realtime", model=tiny_model_dir) == 0
    for video in short:
        said = records(out / f"{video.stem}.jsonl")
        assert said and all(r["end"] <= 4.0 for r in said)


def test_ctrl_c_stops_every_video_and_keeps_every_printed_chunk(videos, tiny_model_dir, tmp_path, capsys,
                                                                 monkeypatch, signal_handlers):
    """A real SIGINT right after the third comment is printed, two videos at a time (so one waits)."""
    from engine.output.narrate import NarrationFiles
    from livecc.cli.narrate import ProgressBar

    printed, write = [], ProgressBar.write
    closed, close = [], NarrationFiles.close

    def recorded_close(self):
        closed.append(self.srt.path.stem)
        close(self)

    def write_then_stop(self, text, err=False):
        write(self, text, err)
        if not err:
            printed.append(text)
        if len(printed) == 3 and not err:
            os.kill(os.getpid(), signal.SIGINT)  # its handler raises here, as Ctrl-C would

    monkeypatch.setattr(ProgressBar, "write", write_then_stop)
    monkeypatch.setattr(NarrationFiles, "close", recorded_close)
    out = tmp_path / "out"
    extra = write_video(tmp_path / "extra.mp4", seconds=4, fps=10)
    assert narrate(*videos.values(), extra, "--out-dir", out, "--sessions", "2", model=tiny_model_dir) == 130
    err = capsys.readouterr().err
    assert "livecc: interrupted (SIGINT)" in err and "Traceback" not in err
    assert re.search(r"^livecc: 4 videos: \d narrated, \d stopped before their end$", err, re.M), err
    for line in printed:  # every printed comment is in its video's subtitles
        name, text = re.fullmatch(r"(\S+) \[\S+\] (.*)", line, re.S).groups()
        assert text in [cue for _, _, cue in parse_srt((out / f"{name}.srt").read_text())], line
    for srt in out.glob("*.srt"):  # and every file holds every chunk it finished, in all three forms
        cues = parse_srt(srt.read_text()) if srt.read_text() else []
        said = [(r["start"], r["end"]) for r in records(srt.with_suffix(".jsonl")) if r["text"]]
        assert [(a, b) for a, b, _ in cues] == said
        assert srt.with_suffix(".vtt").read_text().count("-->") == len(cues)
    assert sorted(closed) == sorted(srt.stem for srt in out.glob("*.srt"))  # every started video's files closed
    assert not [t for t in threading.enumerate() if t.name.startswith("source:")]  # every source stopped
