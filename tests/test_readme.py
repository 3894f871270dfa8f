"""The README is a true front page: every command on it runs (the CPU quick start through
`python -m livecc` in a fresh folder, `make test` and `make run` through `make -n`), it stays short
(250 lines at most), and every relative link in it and in the docs points at a file that exists."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from videos import write_video

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 250
PAGES = [README, ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "results" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]
MAKE_TARGETS = {"run", "test"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _shell_blocks(text: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in ("bash", "sh")]


def _commands(text: str) -> list[list[str]]:
    """Every command line of the page's shell blocks, split as the shell would (comments dropped)."""
    return [argv for block in _shell_blocks(text) for line in block.replace("\\\n", " ").splitlines()
            if (argv := shlex.split(line, comments=True))]


def _is_livecc(argv: list[str]) -> bool:
    return Path(argv[0]).name == "livecc"


def _is_make(argv: list[str]) -> bool:
    return argv[0] == "make" and len(argv) == 2 and argv[1] in MAKE_TARGETS


def _local(arg: str, folder: Path, video: Path) -> str:
    """The README's placeholders made real: the user's video, and /tmp paths inside this test's folder."""
    if arg == "YOUR_VIDEO.mp4":
        return str(video)
    return str(folder / arg.removeprefix("/tmp/")) if arg.startswith("/tmp/") else arg


def _cue_texts(srt: str) -> list[str]:
    """The text of each SubRip cue (a block whose second line is a time range)."""
    blocks = [b.splitlines() for b in srt.strip().split("\n\n") if b.strip()]
    return ["\n".join(lines[2:]) for lines in blocks if len(lines) > 2 and "-->" in lines[1]]


def test_the_front_page_is_at_most_250_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_every_command_on_the_front_page_is_one_these_tests_run():
    commands = _commands(README.read_text(encoding="utf-8"))
    assert {argv[1] for argv in commands if _is_make(argv)} == MAKE_TARGETS
    assert [argv[1] for argv in commands if _is_livecc(argv)][:2] == ["make-tiny-model", "narrate"]
    untested = [shlex.join(argv) for argv in commands if not (_is_make(argv) or _is_livecc(argv))]
    assert untested == [], "a command on the README that no test runs"


def test_the_cpu_quick_start_runs_as_written(tmp_path):
    video = write_video(tmp_path / "clip.mp4", seconds=5)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    outputs = []
    for argv in filter(_is_livecc, _commands(README.read_text(encoding="utf-8"))):
        args = [_local(arg, tmp_path, video) for arg in argv[1:]]
        proc = subprocess.run([sys.executable, "-m", "livecc", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (shlex.join(argv), proc.stderr)
        assert "Traceback" not in proc.stderr
        if "--srt" in args:
            outputs.append(tmp_path / args[args.index("--srt") + 1])
    assert outputs, "the quick start writes no subtitles"
    for srt in outputs:
        assert any(text.strip() for text in _cue_texts(srt.read_text(encoding="utf-8"))), srt


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_and_make_run_do_what_the_readme_says():
    """Both set up .venv with the package installed editable, which puts the livecc commands in .venv/bin;
    test then runs the suite, run starts the app."""
    plans = {}
    for target in MAKE_TARGETS:  # -B: the whole plan, as on a fresh clone; -n: print it, run nothing
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under `make test`
        proc = subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        plans[target] = proc.stdout
        assert "python3 -m venv .venv" in proc.stdout
        assert '.venv/bin/python -m pip install -q -e ".[engine,test,serve]"' in proc.stdout
    assert "QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest" in plans["test"]
    assert plans["run"].strip().splitlines()[-1] == ".venv/bin/livecc-desktop"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["livecc"] == "livecc.cli.main:program" and scripts["livecc-desktop"] == "desktop_app.main:run"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    return broken


def test_every_relative_link_points_at_a_file_that_exists():
    assert (ROOT / "docs").is_dir() and len(PAGES) > 3
    assert [b for page in PAGES for b in _broken_links(page)] == []


def test_the_link_check_catches_a_broken_link(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "there.md").write_text("# A heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md) [ok](there.md#a-heading) ![gone](gone.png) [bad](there.md#nope)\n"
                    "[web](https://example.com)\n```bash\n[not a link](in-code.md)\n```\n")
    assert _broken_links(page) == ["page.md: gone.png (no such file)", "page.md: there.md#nope (no such heading)"]


def test_the_front_page_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in LINK.findall(README.read_text(encoding="utf-8"))}
    assert [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked] == []
