"""Hostile judges (issue 24, items 1, 6, 7, 8 and 10): a localhost OpenAI-compatible server that
answers the first event well, then misbehaves. Each case is one row of a table: the next finding is
one line to add. Whatever the judge does, the key goes nowhere else, nothing it says that is not a
verdict is scored, the run ends with one line and exit 2, and the judged event is kept."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval_data import judge_argv, judge_inputs
from livecc.cli.main import main

MODEL, BASELINE = "my-model", "GPT-4o"
VERDICT = "Commentary A is better aligned with the human commentary"
TRICKLE_BYTES = 200  # bounded: the trickling handler stops by itself after this many, or when cut off
TRICKLE_EVERY_S = 0.05  # far below any per-read timeout, so only a total deadline can end the call


def completion(content) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


class Judge(BaseHTTPRequestHandler):
    """Answers VERDICT to the first `good` requests, then behaves as `mode`; records every request."""

    mode, good, redirect_to = "ok", 2, ""
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        cls.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
        mode = "ok" if len(cls.requests) <= cls.good else cls.mode
        getattr(self, "_" + mode.replace(" ", "_").replace("-", "_"))()

    do_GET = do_POST  # noqa: N815 (a client that follows a redirect may turn POST into GET)

    def _send(self, body: bytes, status: int = 200, length: int | None = None, headers: dict | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _ok(self):
        self._send(completion(VERDICT))

    def _redirect(self):
        self._send(b"", 302, headers={"Location": type(self).redirect_to})

    def _trickle(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        stop = threading.Event()
        for _ in range(TRICKLE_BYTES):
            try:
                self.wfile.write(b" ")
                self.wfile.flush()
            except OSError:  # the client cut the call off
                return
            stop.wait(TRICKLE_EVERY_S)

    def _binary(self):
        self._send(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # not even UTF-8

    def _bad_status_line(self):
        self.wfile.write(b"HELLO \xff\xfe not http\r\n\r\n")

    def _dropped_mid_body(self):
        self._send(completion(VERDICT)[:20], length=500)  # then the handler returns and the connection closes

    def _content_5(self):
        self._send(completion(5))

    def _content_null(self):
        self._send(completion(None))

    def _content_object(self):
        self._send(completion({"text": VERDICT}))

    def _not_a_completion(self):
        self._send(json.dumps({"error": "Commentary A"}).encode())

    def log_message(self, *args):
        pass


class Elsewhere(Judge):
    """Another host for the judge to redirect to: it records what it is sent and answers a verdict."""

    requests: list[dict] = []
    good = 10**9


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def servers():
    Judge.requests, Elsewhere.requests = [], []
    judge, judge_url = _serve(Judge)
    elsewhere, elsewhere_url = _serve(Elsewhere)
    Judge.redirect_to = f"{elsewhere_url}/v1/chat/completions"
    yield f"{judge_url}/v1", Judge.redirect_to
    for server in (judge, elsewhere):
        server.shutdown()
        server.server_close()


@pytest.fixture
def ready(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret")
    return judge_inputs(tmp_path, MODEL, BASELINE)


def _run(ready, url: str, capsys, *extra: str) -> tuple[int, list[str]]:
    data, baseline, out = ready
    code = main([*judge_argv(data, baseline, out, url, MODEL), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("livecc: error: ")]


def _judged(out: Path) -> list[str]:
    path = out / f"{BASELINE}_{MODEL}.jsonl"
    return [json.loads(line)["video_event_id"] for line in path.read_text().splitlines()] if path.exists() else []


# mode, extra flags, what the one error line says after the retries
MISBEHAVING = [
    ("trickle", ("--judge-timeout", "0.3"), "no complete reply within 0.3 s (--judge-timeout)"),
    ("binary", (), "not an OpenAI chat completion reply"),
    ("bad status line", (), "failed after 3 tries"),
    ("dropped mid-body", (), "failed after 3 tries"),
    ("content 5", (), "content is 5, not text"),
    ("content null", (), "content is null, not text"),
    ("content object", (), "not text"),
    ("not a completion", (), "not an OpenAI chat completion reply"),
]


@pytest.mark.parametrize("mode, extra, says", MISBEHAVING, ids=[row[0] for row in MISBEHAVING])
def test_a_misbehaving_judge_is_retried_then_one_line_and_nothing_it_said_is_scored(ready, servers, capsys, mode,
                                                                                    extra, says):
    url, _ = servers
    Judge.mode = mode
    code, err = _run(ready, url, capsys, *extra)
    assert code == 2 and len(err) == 1, err
    assert "failed after 3 tries" in err[0] and says in err[0], err
    assert len(Judge.requests) == 2 + 3  # the first event's two orders, then each try of the next call
    assert _judged(ready[2]) == ["AAAAAAAAAA1_1"]  # finished work is kept, the misbehaviour never scored


def test_a_redirect_is_an_error_naming_where_and_the_key_never_leaves(ready, servers, capsys):
    url, elsewhere = servers
    Judge.mode = "redirect"
    code, err = _run(ready, url, capsys)
    assert code == 2 and len(err) == 1 and f"redirects (HTTP 302) to {elsewhere}" in err[0], err
    assert Elsewhere.requests == []  # not followed at all, so no Authorization header went there
    assert all(r["auth"] == "Bearer sk-secret" for r in Judge.requests) and len(Judge.requests) == 3
    assert _judged(ready[2]) == ["AAAAAAAAAA1_1"]


BAD_OPTIONS = [
    (("--judge-url", "notaurl"), "--judge-url notaurl is not an http(s) address"),
    (("--judge-url", "ftp://host/v1"), "is not an http(s) address"),
    (("--judge-url", "http://127.0.0.1:99999/v1"), "is not an http(s) address"),
    (("--judge-backoff", "1e300"), "--judge-backoff 1e+300 must be from 0 to 600 seconds"),
    (("--judge-timeout", "0"), "--judge-timeout 0 must be above 0"),
    (("--judge-timeout", "1e300"), "at most 3600 seconds"),
]


@pytest.mark.parametrize("flags, says", BAD_OPTIONS, ids=[" ".join(row[0]) for row in BAD_OPTIONS])
def test_bad_judge_options_exit_2_with_one_line_before_any_call(ready, servers, capsys, flags, says):
    url, _ = servers
    code, err = _run(ready, url, capsys, *flags)
    assert code == 2 and len(err) == 1 and says in err[0], err
    assert Judge.requests == []
