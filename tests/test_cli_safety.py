"""Nothing lost (issue 14): bad input is refused before the model loads, subtitles are on disk as the
run goes, stop signals and full disks keep every finished chunk, and the terminal holds our lines only."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from livecc.cli.main import main
from test_cli import SMALL, parse_srt
from videos import write_video


@pytest.fixture(scope="module")
def video6(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "six.mp4", seconds=6, fps=10)


@pytest.fixture
def no_model_load(monkeypatch):
    """Refusals must come before the model loads: loading fails the test."""
    def boom(args):
        raise AssertionError("the model was loaded before the input was checked")
    for module in ("livecc.cli.narrate", "livecc.cli.ask"):
        monkeypatch.setattr(f"{module}.load", boom)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error: "), err
    return err[0]


def parse_vtt(text: str) -> list[tuple[str, str]]:
    assert text.startswith("WEBVTT\n\n"), text[:40]
    body = text[len("WEBVTT\n\n"):].strip()
    cues = []
    for block in body.split("\n\n") if body else []:
        lines = block.splitlines()
        a, b = re.fullmatch(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})", lines[0]).groups()
        cues.append((a, b))
    return cues


def write_wide_video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 4, (4000, 16))
    for i in range(4):
        writer.write(np.full((16, 4000, 3), i * 40, np.uint8))
    writer.release()
    return path


# -- 1. output paths ---------------------------------------------------------------------------

def test_output_paths_are_refused_before_the_model_loads(video6, tmp_path, capsys, no_model_load):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    other = tmp_path / "other.mp4"  # a tab-completion slip: --srt b.mp4 would have emptied it
    other.write_bytes(video6.read_bytes())
    foreign = tmp_path / "events.jsonl"  # JSON objects, not livecc records: narrate appended to it
    foreign.write_text('{"video": "a.mp4"}\n{"video": "b.mp4", "q')
    cases = {
        "--srt is the input": (["--srt", str(video6)], "input video"),
        "--jsonl is the input": (["--jsonl", str(video6)], "input video"),
        "--srt and --vtt the same": (["--srt", str(tmp_path / "x.srt"), "--vtt", str(tmp_path / "x.srt")], "both"),
        "--srt is a folder": (["--srt", str(tmp_path)], "folder"),
        "--vtt under a file": (["--vtt", str(a_file / "sub" / "x.vtt")], "writable"),
        "--srt where nothing can be created": (["--srt", "/proc/livecc-test/x.srt"], "writable"),
        "--speech-wav under a file": (["--speech-wav", str(a_file / "x.wav")], "writable"),
        "--srt names another video": (["--srt", str(other)], "is not an SRT file"),
        "--vtt names a text file": (["--vtt", str(a_file)], "is not a WebVTT file"),
        "--jsonl is another tool's": (["--jsonl", str(foreign)], "is not a JSONL file of livecc records"),
    }
    size = video6.stat().st_size
    for name, (flags, says) in cases.items():
        assert main(["narrate", str(video6), *flags]) == 2, name
        assert says in one_error_line(capsys), name
    assert video6.stat().st_size == size and a_file.read_text() == "x" and other.stat().st_size == size
    assert foreign.read_text() == '{"video": "a.mp4"}\n{"video": "b.mp4", "q'  # not cut as a torn line
    assert not (tmp_path / "x.srt").exists()


def test_an_output_named_as_a_folder_is_refused(video6, tmp_path, capsys, no_model_load):
    """`--srt subs/` meant a folder: it was written as a file named `subs` (Path drops the slash)."""
    for flag in ("--srt", "--vtt", "--jsonl", "--speech-wav"):
        target = tmp_path / flag.strip("-")
        with pytest.raises(SystemExit) as stopped:
            main(["narrate", str(video6), flag, f"{target}/"])
        assert stopped.value.code == 2, flag
        assert "names a folder: give a file name inside it" in capsys.readouterr().err, flag
        assert not target.exists(), flag
    with pytest.raises(SystemExit):
        main(["ask", str(video6), "what?", "--jsonl", f"{tmp_path / 'answers'}/"])
    assert "names a folder" in capsys.readouterr().err and not (tmp_path / "answers").exists()


def test_a_rerun_replaces_its_own_outputs_whatever_their_names(video6, tmp_path):
    """Outputs are refused for what they hold, not their names: a rerun into subs.txt replaces the
    SRT it wrote, an empty file is fine, a video named as --srt is not."""
    from livecc.cli.checks import OutputError, check_output

    subs, empty, wave = tmp_path / "subs.txt", tmp_path / "empty.srt", tmp_path / "voice.out"
    subs.write_text("1\n00:00:00,000 --> 00:00:03,000\na man walks\n\n")
    empty.write_text("")
    wave.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    assert check_output("--srt", subs, [video6]) == subs.resolve()
    assert check_output("--vtt", empty, [video6]) == empty.resolve()
    assert check_output("--speech-wav", wave, [video6]) == wave.resolve()
    with pytest.raises(OutputError, match="is not a WebVTT file"):
        check_output("--vtt", subs, [video6])
    other = tmp_path / "other.mp4"
    other.write_bytes(video6.read_bytes())
    with pytest.raises(OutputError, match="is not an SRT file"):
        check_output("--srt", other, [video6])


def test_bad_values_are_refused_before_the_model_loads(video6, tmp_path, capsys, no_model_load):
    wide = write_wide_video(tmp_path / "wide.mp4")
    v = str(video6)
    cases = {
        "temperature nan": (["narrate", v, "--temperature", "nan"], "--temperature"),
        "top-p inf": (["narrate", v, "--top-p", "inf"], "--top-p"),
        "device tpu9": (["narrate", v, "--device", "tpu9"], "tpu9"),
        "max-new-tokens huge": (["narrate", v, "--max-new-tokens", "100000"], "--max-new-tokens"),
        "max-answer-tokens huge": (["ask", v, "hi", "--max-answer-tokens", "100000"], "--max-answer-tokens"),
        "max-pixels huge": (["narrate", v, "--max-pixels", str(10**9)], "--max-pixels"),
        "kv-budget too small": (["narrate", v, "--kv-budget", "2048"], "at least 2049"),
        "aspect ratio over 200": (["narrate", str(wide)], "4000x16"),
        "ask --at nan": (["ask", v, "hi", "--at", "nan"], "--at"),
        "ask --at past the end": (["ask", v, "hi", "--at", "20"], "outside the video"),
        "empty question": (["ask", v, "  "], "question is empty"),
        "question too long": (["ask", v, "why " * 1001], "characters, over 4000"),
    }
    for name, (argv, says) in cases.items():
        assert main(argv) == 2, name
        line = one_error_line(capsys)
        assert says in line, (name, line)
        assert "kv_budget" not in line


def test_the_minimum_kv_budget_named_is_accepted(video6, tiny_model_dir, tmp_path):
    assert main(["narrate", str(video6), "--model", str(tiny_model_dir), "--kv-budget", "2049", *SMALL]) == 0


# -- 4. model folders --------------------------------------------------------------------------

def _broken_models(tiny: Path, root: Path) -> dict[str, tuple[Path, str]]:
    def copy(name: str) -> Path:
        return Path(shutil.copytree(tiny, root / name))

    truncated = copy("truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    listed = copy("config-list")
    (listed / "config.json").write_text(json.dumps([{"model_type": "qwen2_vl"}]))
    no_tok = copy("no-tokenizer")
    for f in no_tok.glob("tokenizer*"):
        f.unlink()
    pickled = copy("pickled-bin")
    (pickled / "model.safetensors").unlink()
    import collections
    import torch
    torch.save({"x": collections.Counter("ab"), "y": _Unsafe()}, pickled / "pytorch_model.bin")
    return {
        "truncated safetensors": (truncated, "re-download it, or delete the folder from the Hugging Face cache"),
        "config.json holds a list": (listed, "not a model config"),
        "no tokenizer files": (no_tok, "no tokenizer files"),
        "pickled .bin": (pickled, "safetensors"),
    }


class _Unsafe:
    """A class torch.load(weights_only=True) refuses to unpickle."""


def test_broken_model_folders_give_one_line_and_leave_no_files(video6, tiny_model_dir, tmp_path, capsys):
    for name, (folder, says) in _broken_models(tiny_model_dir, tmp_path).items():
        srt = tmp_path / f"{folder.name}.srt"
        assert main(["narrate", str(video6), "--model", str(folder), "--srt", str(srt), *SMALL]) == 2, name
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("livecc: error: ")]
        assert len(errors) == 1 and says in errors[0], (name, err)
        assert "Traceback" not in err and "weights_only=False" not in err
        assert not srt.exists(), name  # no empty subtitles left behind


# -- files written as the run goes -------------------------------------------------------------

def test_missing_folders_are_created_and_every_file_holds_every_chunk(video6, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    srt, vtt, jsonl = out / "a.srt", out / "b" / "a.vtt", out / "c" / "a.jsonl"
    assert main(["narrate", str(video6), "--model", str(tiny_model_dir), "--srt", str(srt), "--vtt", str(vtt),
                 "--jsonl", str(jsonl), *SMALL]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["chunk_index"] for r in records] == [0, 1, 2, 3]  # 3 s, then one per second
    said = [(r["start"], r["end"]) for r in records if r["text"]]
    assert [(a, b) for a, b, _ in parse_srt(srt.read_text())] == said
    assert len(parse_vtt(vtt.read_text())) == len(said)
    assert records[0]["stats"]["lag_ms"] < 1500  # faster than real time: not how far the file was read ahead
    captured = capsys.readouterr()
    summary = [line for line in captured.err.splitlines() if line.startswith("livecc: 4 chunks")]
    assert summary and f"{len(said)} comments" in summary[0] and str(srt) in summary[0]


def test_content_past_the_stated_duration_keeps_the_bar_and_the_subtitles(video6, tiny_model_dir, tmp_path,
                                                                          monkeypatch, capsys):
    """A file whose container says 4 s and whose frames run 6 s (concatenated without re-timing)."""
    import dataclasses

    from engine.capture import sources

    real = sources.probe_video
    monkeypatch.setattr(sources, "probe_video", lambda p: dataclasses.replace(real(p), duration=4.0, frame_count=40))
    jsonl = tmp_path / "jump.jsonl"
    assert main(["narrate", str(video6), "--model", str(tiny_model_dir), "--jsonl", str(jsonl), *SMALL]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 4 and records[-1]["end"] == 6.0


def test_a_torn_jsonl_line_is_cut_before_appending(video6, tiny_model_dir, tmp_path, capsys):
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_text('{"type": "commentary", "chunk_index": 0, "text": "old"}\n{"type": "commentary", "chunk_in')
    assert main(["narrate", str(video6), "--model", str(tiny_model_dir), "--jsonl", str(jsonl), *SMALL]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line parses
    assert records[0] == {"type": "commentary", "chunk_index": 0, "text": "old"}
    assert [r["chunk_index"] for r in records[1:]] == [0, 1, 2, 3]
    assert "torn line" in capsys.readouterr().err


# -- subprocesses: signals, a full disk, memory, a clean terminal -------------------------------

def _env() -> dict:
    # one thread each: the trials run side by side on small CI machines
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="default", OMP_NUM_THREADS="1")


def _forked_runs(mode: str, video: Path, model: Path, out: Path, *extra: str) -> list[dict]:
    helper = Path(__file__).with_name("cli_forks.py")
    subprocess.run([sys.executable, str(helper), mode, str(video), str(model), str(out), *extra], check=True,
                   env=_env(), timeout=300)
    return json.loads((out / "runs.json").read_text())


def _times(line: str) -> tuple[float, float]:
    def secs(s: str) -> float:
        m, rest = s.split(":")
        return int(m) * 60 + float(rest)
    a, b = re.match(r"\[(\S+)-(\S+)\]", line).groups()
    return secs(a), secs(b)


@pytest.mark.slow
def test_stop_signals_at_random_moments_keep_every_printed_chunk(tiny_model_dir, tmp_path):
    """10 SIGTERMs at random events of a run (fixed seed: after the n-th printed comment, or while
    the n-th chunk is prefilled or decoded), a SIGHUP and a quick double Ctrl-C. Each lands mid-run:
    the run is held at its event until the signal comes. The exit status says which signal, and
    SRT, VTT and JSONL hold every chunk whose comment was printed."""
    video = write_video(tmp_path / "twenty.mp4", seconds=20, fps=5)
    trials = _forked_runs("signals", video, tiny_model_dir, tmp_path / "runs", "14")
    assert len(trials) == 12 and len({tuple(t["gate"]) for t in trials}) >= 8  # varied moments
    for t in trials:
        out, signum, err = Path(t["out"]), t["signals"][0], t["stderr"]
        assert "Traceback" not in err, err
        assert t["reached"] and t["code"] == 128 + signum and "livecc: 18 chunks" not in err, t
        srt_text = out.joinpath("a.srt").read_text()
        srt = parse_srt(srt_text) if srt_text else []
        vtt = parse_vtt(out.joinpath("a.vtt").read_text())
        records = [json.loads(line) for line in out.joinpath("a.jsonl").read_text().splitlines()]
        cues = {(a, b) for a, b, _ in srt}
        assert {_times(line) for line in t["printed"]} <= cues, t
        assert len(vtt) == len(srt) and len(records) >= len(t["printed"])


def test_a_stop_signal_during_a_cue_waits_until_both_files_have_it():
    """What the random-moment trials can hit only by luck: SIGTERM between the SRT and the VTT write."""
    import signal

    from livecc.cli.signals import Interrupted, held, stop_signals

    written = []
    with pytest.raises(Interrupted) as stop, stop_signals():
        with held():
            written.append("srt")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, and must not raise yet
            written.append("vtt")
    assert written == ["srt", "vtt"] and stop.value.signum == signal.SIGTERM
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    child.terminate()  # the CLI stays deaf to a repeated SIGTERM, but the processes it starts do not
    assert child.wait(timeout=10) == -signal.SIGTERM


def test_a_full_disk_is_one_line_and_a_rerun_repairs_the_jsonl(tiny_model_dir, tmp_path):
    video = write_video(tmp_path / "eight.mp4", seconds=8, fps=5)
    full, rerun = _forked_runs("full-disk", video, tiny_model_dir, tmp_path / "runs")
    assert full["code"] == 2, full["stderr"]
    errors = [line for line in full["stderr"].splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("livecc: error: cannot write"), full["stderr"]
    assert "Traceback" not in full["stderr"]
    cues = {(a, b) for a, b, _ in parse_srt(full["srt"])}
    assert {_times(line) for line in full["printed"]} == cues  # the SRT holds exactly the narrated comments
    assert full["jsonl_torn"]  # the disk filled mid-record
    assert rerun["code"] == 0, rerun["stderr"]
    assert "torn line" in rerun["stderr"]
    records = [json.loads(line) for line in Path(rerun["out"], "a.jsonl").read_text().splitlines()]
    assert len(records) == full["jsonl_lines"] + 6  # the old complete records, then the rerun's 6 chunks


# Runs the CLI as its only child and prints that child's peak RSS (other tests' children do not count).
PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print(f'peak_rss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}'); sys.exit(code)")
OURS = re.compile(r"^(livecc: |Loading weights from |Model ready|narrating |\s*$)")


@pytest.mark.slow
def test_4k_file_stays_under_1_5_gb_and_stderr_holds_only_our_lines(tiny_model_dir, tmp_path):
    """Frames enter the buffer at model size: a 4K file peaked at ~1.8 GB before (full-size frames in
    the buffer, and their float copies in preprocessing); the tiny model itself needs ~0.7 GB."""
    path = tmp_path / "uhd.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 2, (3840, 2160))
    for i in range(20):
        image = np.full((2160, 3840, 3), 13 * i, np.uint8)
        cv2.rectangle(image, (150 * i, 300), (150 * i + 600, 900), (0, 0, 255), -1)
        writer.write(image)
    writer.release()
    # 100000 > min_pixels (78400): the capture-side resize is then exactly the model's (see frame_resizer)
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "livecc.cli", "narrate", str(path),
                           "--model", str(tiny_model_dir), "--srt", str(tmp_path / "uhd.srt"), "--max-pixels", "100000"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.splitlines()[-1].removeprefix("peak_rss_kb=")) / 1024
    assert peak_mb < 1536, f"peak RSS {peak_mb:.0f} MB"
    foreign = [line for line in re.split(r"[\r\n]", proc.stderr) if not OURS.match(line)]
    assert not foreign, foreign


# -- 8. speech ---------------------------------------------------------------------------------

def test_speak_checks_the_audio_device_before_loading_a_voice_or_the_model(video6, tmp_path, capsys,
                                                                          no_model_load, monkeypatch):
    def no_voice(*a, **k):
        raise AssertionError("the voice was loaded before the audio device was checked")

    monkeypatch.setattr("tts.cli_support.make_synthesizer", no_voice)
    assert main(["narrate", str(video6), "--speak", "--audio-device", "99"]) == 2
    assert "audio output device" in one_error_line(capsys)


def test_voice_none_needs_no_device_and_the_wav_is_as_long_as_the_video(video6, tiny_model_dir, tmp_path):
    import soundfile

    wav = tmp_path / "silence" / "speech.wav"
    assert main(["narrate", str(video6), "--model", str(tiny_model_dir), "--speak", "--voice", "none",
                 "--audio-device", "99", "--speech-wav", str(wav), *SMALL]) == 0
    info = soundfile.info(str(wav))
    assert info.frames == round(6.0 * info.samplerate)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing: `make deps` installs it as root")
def test_spoken_wav_is_exactly_as_long_as_the_video(video6, tiny_model_dir, tmp_path):
    import soundfile

    wav = tmp_path / "speech.wav"
    assert main(["narrate", str(video6), "--model", str(tiny_model_dir), "--voice", "espeak",
                 "--speech-wav", str(wav), *SMALL]) == 0
    audio, rate = soundfile.read(str(wav))
    assert len(audio) == round(6.0 * rate) and abs(audio).max() > 0  # speech, cut at the video's end


def test_a_truncated_file_is_our_one_line_without_ffmpeg_chatter(video6, tmp_path):
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(video6.read_bytes()[: video6.stat().st_size * 2 // 5])  # no moov atom
    proc = subprocess.run([sys.executable, "-m", "livecc.cli", "narrate", str(truncated)], capture_output=True,
                          text=True, env=_env(), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [line for line in proc.stderr.splitlines() if line.startswith("livecc: ")]
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_version():
    proc = subprocess.run([sys.executable, "-m", "livecc.cli", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and re.fullmatch(r"livecc \S+\n", proc.stdout), proc.stdout


def test_every_cleanup_step_runs_when_an_earlier_one_fails(video6, tiny_model_dir, tmp_path, monkeypatch, capsys):
    from livecc.cli import narrate

    def broken_close(self):
        raise RuntimeError("the progress bar failed to close")

    monkeypatch.setattr(narrate.ProgressBar, "close", broken_close)
    srt, vtt, jsonl = tmp_path / "a.srt", tmp_path / "a.vtt", tmp_path / "a.jsonl"
    with pytest.raises(RuntimeError):  # a bug keeps its traceback, but loses nothing
        main(["narrate", str(video6), "--model", str(tiny_model_dir), "--srt", str(srt), "--vtt", str(vtt),
              "--jsonl", str(jsonl), *SMALL])
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    said = [(r["start"], r["end"]) for r in records if r["text"]]
    assert len(records) == 4 and [(a, b) for a, b, _ in parse_srt(srt.read_text())] == said
    assert len(parse_vtt(vtt.read_text())) == len(said)
    assert "livecc: 4 chunks" in capsys.readouterr().err  # the summary, the last step, still ran


def test_ctrl_c_before_anything_was_written_does_not_claim_a_transcript(video6, tmp_path, monkeypatch, capsys):
    def interrupted_load(args):
        raise KeyboardInterrupt

    for command in (["narrate", str(video6), "--srt", str(tmp_path / "x.srt")], ["ask", str(video6), "what?"]):
        module = "livecc.cli.narrate" if command[0] == "narrate" else "livecc.cli.ask"
        monkeypatch.setattr(f"{module}.load", interrupted_load)
        assert main(command) == 130
        err = capsys.readouterr().err
        assert "interrupted" in err and "written" not in err and "wrote" not in err, err


def test_ask_past_where_the_file_really_ends_warns(video6, tiny_model_dir, monkeypatch, capsys):
    """The container says 20 s, the frames stop at 6 s: answer from what was there, and say so."""
    import dataclasses

    from engine.capture import sources

    real = sources.probe_video
    monkeypatch.setattr(sources, "probe_video", lambda p: dataclasses.replace(real(p), duration=20.0))
    assert main(["ask", str(video6), "What is moving?", "--at", "15", "--model", str(tiny_model_dir),
                 "--max-answer-tokens", "4", *SMALL]) == 0
    err = capsys.readouterr().err
    assert "livecc: warning: the video ends at 6.0 s, before --at 15" in err, err
