"""`livecc eval livesports-cc` judging (issue 11, acceptance 3 and 4): LiveCC's llm_judge.py protocol
against a local OpenAI-compatible server with scripted verdicts, retries, --score-only, bad input.
The predictions are written beforehand, so no model is loaded here."""

from __future__ import annotations

import json
import re
import shlex
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from livecc.cli.main import main
from engine.eval.judge import JudgeClient, JudgeError
from eval_data import judge_argv, judge_inputs

MODEL = "my-model"
BASELINE = "GPT-4o"
A_WINS = "Commentary A is better aligned with the human commentary"
B_WINS = "Commentary B is better aligned with the human commentary"
# Per event: the judge's reply when the model is A (first order), then when it is B (second order).
VERDICTS = {1: (A_WINS, B_WINS), 2: (B_WINS, A_WINS), 3: (A_WINS, "I cannot tell."), 4: ("Both are fine.", A_WINS)}
# By hand: event 1 the model wins twice, 2 never, 3 once (then a tie), 4 never (a tie, then the baseline).
EXPECTED_JUDGMENTS = [
    {"video_event_id": "AAAAAAAAAA1_1", "ab_winner": MODEL, "ba_winner": MODEL},
    {"video_event_id": "AAAAAAAAAA1_2", "ab_winner": BASELINE, "ba_winner": BASELINE},
    {"video_event_id": "BBBBBBBBBB2_3", "ab_winner": MODEL, "ba_winner": "tie"},
    {"video_event_id": "BBBBBBBBBB2_4", "ab_winner": "tie", "ba_winner": BASELINE},
]
EXPECTED_WIN_RATE = 100 * 3 / 8


class ScriptedJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions that answers from VERDICTS; the first `fail_first`
    requests and every request after `fail_after` get HTTP 503."""

    fail_first = 0
    fail_after: int | None = None
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        n = len(cls.requests)
        if n <= cls.fail_first or (cls.fail_after is not None and n > cls.fail_after):
            self.send_error(503, "overloaded")
            return
        prompt = body["messages"][0]["content"]
        event = int(re.search(r"---Commentary A---\n\S+-(\d+)", prompt).group(1))
        model_first = f"---Commentary A---\npred-{event}" in prompt
        reply = VERDICTS[event][0 if model_first else 1]
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    ScriptedJudge.fail_first, ScriptedJudge.fail_after, ScriptedJudge.requests = 0, None, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedJudge)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ready(tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    """Data, baseline captions and an output folder that already holds the model's predictions."""
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    return judge_inputs(tmp_path, MODEL, BASELINE)


def _argv(data: Path, baseline: Path, out: Path, url: str) -> list[str]:
    return judge_argv(data, baseline, out, url, MODEL)


def _error_lines(capsys) -> list[str]:
    """The error lines on stderr (progress bars are there too); never a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("livecc: error: ")]


def _judgments(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / f"{BASELINE}_{MODEL}.jsonl").read_text().splitlines()]


def test_win_rate_and_judgments_follow_the_official_protocol(ready, judge_server, capsys):
    data, baseline, out = ready
    assert main(_argv(data, baseline, out, judge_server)) == 0
    assert sorted(_judgments(out), key=lambda j: j["video_event_id"]) == EXPECTED_JUDGMENTS
    assert f"Winning Rate for {MODEL} vs. {BASELINE}: {EXPECTED_WIN_RATE:.2f}%" in capsys.readouterr().out
    assert json.loads((out / "judge.json").read_text())["win_rate"] == pytest.approx(EXPECTED_WIN_RATE)
    sent = ScriptedJudge.requests
    assert len(sent) == 8 and all(r["path"] == "/v1/chat/completions" for r in sent)
    assert all(r["auth"] == "Bearer sk-test" and r["body"]["model"] == "judge-x" for r in sent)
    assert "---Human Commentary---\nHe scores!" in sent[0]["body"]["messages"][0]["content"]

    judgments = out / f"{BASELINE}_{MODEL}.jsonl"
    assert main(["eval", "livesports-cc", "--score-only", str(judgments)]) == 0
    assert f"{EXPECTED_WIN_RATE:.2f}%" in capsys.readouterr().out


def test_a_failing_judge_is_retried_then_reported_and_what_is_done_is_kept(ready, judge_server, capsys):
    data, baseline, out = ready
    ScriptedJudge.fail_first = 2  # two 503s, then the third try of the first call succeeds
    ScriptedJudge.fail_after = 2 + 4  # two events judged, then the server goes down for good
    assert main(_argv(data, baseline, out, judge_server)) == 2
    err = _error_lines(capsys)
    assert len(err) == 1 and "failed after 3 tries (HTTP 503" in err[0], err
    assert len(ScriptedJudge.requests) == 2 + 4 + 3
    kept = _judgments(out)
    assert kept == EXPECTED_JUDGMENTS[:2]  # both finished events are on disk

    ScriptedJudge.fail_first, ScriptedJudge.fail_after = 0, None
    assert main(_argv(data, baseline, out, judge_server)) == 0  # the rerun judges only the rest
    assert len(ScriptedJudge.requests) == 9 + 4
    assert sorted(_judgments(out), key=lambda j: j["video_event_id"]) == EXPECTED_JUDGMENTS


def test_backoff_doubles_between_tries(judge_server):
    ScriptedJudge.fail_first = 10
    waits: list[float] = []
    client = JudgeClient(judge_server, "m", "k", retries=4, backoff_s=0.5, sleep=waits.append)
    with pytest.raises(JudgeError, match="failed after 4 tries"):
        client.complete("---Commentary A---\npred-1")
    assert waits == [0.5, 1.0, 2.0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_judge_and_unset_key_exit_2_with_one_line(ready, monkeypatch, capsys):
    data, baseline, out = ready
    assert main(_argv(data, baseline, out, f"http://127.0.0.1:{_closed_port()}/v1")) == 2
    err = _error_lines(capsys)
    assert len(err) == 1 and "judge at http://127.0.0.1" in err[0] and "server is up" in err[0], err
    monkeypatch.delenv("JUDGE_KEY")
    assert main(_argv(data, baseline, out, "http://127.0.0.1:1/v1")) == 2
    err = _error_lines(capsys)
    assert len(err) == 1 and "export JUDGE_KEY=" in err[0], err


def test_the_printed_hint_to_judge_runs_and_bars_show_no_rate_nor_empty_work(ready, judge_server, monkeypatch,
                                                                           capsys):
    data, baseline, out = ready
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    # --max-new-tokens is part of the run's settings: the hint must repeat it, as it must repeat --model.
    assert main(["eval", "livesports-cc", "--data", str(data), "--model", f"/models/{MODEL}", "--out", str(out),
                 "--max-new-tokens", "2"]) == 0
    printed = capsys.readouterr()
    assert "LiveSports-3K CC" not in printed.err  # every prediction was there: no empty "0 item" bar
    command = printed.out.strip().splitlines()[-1].strip()
    assert command.startswith("livecc eval livesports-cc ") and f"--model /models/{MODEL}" in command, command
    argv = shlex.split(command)[1:]
    argv[argv.index("--judge-url") + 1] = judge_server  # the local judge stands in for the real one
    argv[argv.index("--baseline") + 1] = str(baseline)
    assert main(argv) == 0
    assert sorted(_judgments(out), key=lambda j: j["video_event_id"]) == EXPECTED_JUDGMENTS
    assert all(r["auth"] == "Bearer sk-test" for r in ScriptedJudge.requests)
    last = capsys.readouterr().err.split("\r")[-1]
    assert "4/4" in last and "event/s" not in last and "s/event" not in last, last
    assert main(argv) == 0  # all judged: a rerun shows no bar at all
    assert "judging" not in capsys.readouterr().err


@pytest.mark.parametrize("winners, shown", [(("tiny", "GPT_4o"), "50.00"), (("GPT_4o", "GPT_4o"), "0.00"),
                                            (("tiny", "tie"), "50.00")])
def test_score_only_reads_the_model_id_from_the_records(tmp_path, capsys, winners, shown):
    path = tmp_path / "GPT_4o_tiny.jsonl"  # BASELINE_MODEL.jsonl, where both names hold a '_'
    path.write_text(json.dumps({"video_event_id": "v_1", "ab_winner": winners[0], "ba_winner": winners[1]}) + "\n")
    assert main(["eval", "livesports-cc", "--score-only", str(path)]) == 0
    assert f"Winning Rate for tiny: {shown}%" in capsys.readouterr().out
