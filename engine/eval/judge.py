"""The LLM judge of LiveSports-3K CC, through any OpenAI-compatible chat endpoint (standard library).

Follows showlab/livecc `evaluation/livesports3kcc/llm_judge.py`: for each event the judge sees the
model's and the baseline's commentary in both orders (A/B, then B/A) with the human commentary;
a reply naming "Commentary A" (else "Commentary B") picks that one, anything else is a tie; ties
count as losses; win rate = wins / 2N, in percent. Judgments are written in its format
{video_event_id, ab_winner, ba_winner} (winners are model ids or "tie"), to BASELINE_MODEL.jsonl.

The key goes to the configured host only: redirects are never followed (http.client follows
none), and a redirect is an error naming where it pointed. Each call has a total deadline, so a
judge that trickles bytes cannot hold it; any reply that is not a chat completion with text
content is retried like an HTTP 500, never scored.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from engine.errors import LiveCCError

TIE = "tie"
MAX_BACKOFF_S = 600.0  # one wait between tries at most (--judge-backoff's ceiling too)
MAX_REPLY_BYTES = 16 * 2**20  # a chat completion is a few kB; more is not a judge


class JudgeError(LiveCCError):
    """The judge could not be reached or refused the request."""


def judge_prompt(a: str, b: str, human: str) -> str:
    return (
        "You are an expert in video commentary. "
        "Your task is to review two commentaries (Commentary A and Commentary B), and select the one that better "
        "aligns with the human commentary. "
        "You should consider the criteria:\n"
        "1. Semantic Alignment: The commentary should convey the same meaning, details, and key points as the human "
        "commentary.\n"
        "If the above criteria is not enough to judge, then consider:\n"
        "2. Stylistic Consistency: The commentary should maintain a tone, word choice, and structure similar to the "
        "human commentary.\n"
        f"\n---Commentary A---\n{a}\n----------\n"
        f"\n---Commentary B---\n{b}\n----------\n"
        f"\n---Human Commentary---\n{human}\n----------\n"
        '\nYour response should be "Commentary A is better aligned with the human commentary" or '
        '"Commentary B is better aligned with the human commentary".\n'
    )


def verdict(reply: str, a_id: str, b_id: str) -> str:
    if "Commentary A" in reply:
        return a_id
    if "Commentary B" in reply:
        return b_id
    return TIE


class _Retry(Exception):
    """A try that may succeed later: network trouble, HTTP 429/5xx, the deadline, a malformed reply."""


def reply_content(body: bytes) -> str:
    """The text of an OpenAI chat completion; _Retry for anything else (only text is a verdict)."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError, RecursionError):
        raise _Retry("not an OpenAI chat completion reply") from None
    if not isinstance(content, str):
        raise _Retry(f"a reply whose content is {json.dumps(content)[:40]}, not text")
    return content


def _open(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for `url` and the request target, through $https_proxy/$http_proxy when set."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname):
        return cls(parts.hostname, parts.port, timeout=timeout), target
    via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme == "http":
        return http.client.HTTPConnection(via.hostname, via.port, timeout=timeout), url
    conn = http.client.HTTPSConnection(via.hostname, via.port, timeout=timeout)
    conn.set_tunnel(parts.hostname, parts.port)
    return conn, target


class _Deadline:
    """Cuts a call's socket when its total time is up: socket timeouts bound each read only."""

    def __init__(self, seconds: float):
        self.expired, self.sock = False, None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        """The socket to cut (kept here: http.client drops its own reference once a reply began)."""
        with self._lock:
            self.sock = sock
            if self.expired:
                self._shutdown()

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self.sock is not None:
            try:  # the plain socket's shutdown, also under TLS: the blocked read sees end of file
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class _Reply:
    status: int
    reason: str
    location: str | None
    body: bytes


def _exchange(conn: http.client.HTTPConnection, deadline: _Deadline, target: str, body: bytes,
              headers: dict) -> _Reply:
    conn.connect()
    deadline.watch(conn.sock)
    conn.request("POST", target, body, headers)
    resp = conn.getresponse()
    data = resp.read(MAX_REPLY_BYTES + 1)
    if len(data) > MAX_REPLY_BYTES:
        raise _Retry(f"a reply over {MAX_REPLY_BYTES >> 20} MB")
    return _Reply(resp.status, resp.reason, resp.getheader("Location"), data)


def post(url: str, body: bytes, headers: dict, timeout: float) -> _Reply:
    """One POST, its whole reply within `timeout` seconds; _Retry for anything that went wrong."""
    conn, target = _open(url, timeout)
    try:
        with _Deadline(timeout) as deadline:
            try:
                reply = _exchange(conn, deadline, target, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                reason = f"no complete reply within {timeout:g} s (--judge-timeout)" if deadline.expired \
                    else str(exc) or type(exc).__name__
                raise _Retry(reason) from None
            if deadline.expired:  # a cut reply without a length reads as a short, complete one
                raise _Retry(f"no complete reply within {timeout:g} s (--judge-timeout)")
            return reply
    finally:
        conn.close()


def check_judge_url(url: str) -> str:
    """The chat completions endpoint of --judge-url; JudgeError unless it is an http(s) address."""
    endpoint = url.rstrip("/")
    endpoint = endpoint if endpoint.endswith("/chat/completions") else endpoint + "/chat/completions"
    try:
        parts = urlsplit(endpoint)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0  # .port checks it
    except ValueError:
        ok = False
    if not ok:
        raise JudgeError(f"--judge-url {url} is not an http(s) address: pass e.g. https://api.openai.com/v1")
    return endpoint


@dataclass
class JudgeClient:
    """POST {url}/chat/completions with a bearer key; retries network errors, a call past its
    deadline, HTTP 429 and 5xx and malformed replies with exponential backoff, then raises
    JudgeError. Other 4xx and any redirect raise JudgeError at once."""

    url: str
    model: str
    key: str
    retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self.endpoint = check_judge_url(self.url)

    def _call(self, prompt: str) -> str:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "seed": 42}
        reply = post(self.endpoint, json.dumps(body).encode(), {"Content-Type": "application/json",
                                                                "Authorization": f"Bearer {self.key}"}, self.timeout_s)
        if 300 <= reply.status < 400:
            to = urljoin(self.endpoint, reply.location) if reply.location else "no address"
            raise JudgeError(f"judge at {self.endpoint} redirects (HTTP {reply.status}) to {to}; the key is sent to "
                             "--judge-url's host only: if that address is the judge, pass it as --judge-url")
        if reply.status == 429 or reply.status >= 500:
            raise _Retry(f"HTTP {reply.status} {reply.reason}")
        if reply.status >= 400:
            raise JudgeError(f"judge at {self.endpoint} refused the request (HTTP {reply.status} {reply.reason}): "
                             "check --judge-model and the key")
        return reply_content(reply.body)

    def wait_s(self, attempt: int) -> float:
        """Seconds before try `attempt` (from 1): doubling, capped so no wait overflows."""
        return min(self.backoff_s * 2.0 ** min(attempt - 1, 32), MAX_BACKOFF_S)

    def complete(self, prompt: str) -> str:
        reason = ""
        for attempt in range(self.retries):
            if attempt:
                self.sleep(self.wait_s(attempt))
            try:
                return self._call(prompt)
            except _Retry as exc:
                reason = str(exc)
        raise JudgeError(f"judge at {self.endpoint} failed after {self.retries} tries ({reason}): "
                         "check --judge-url and that the server is up, then rerun to continue")


def judge_event(complete: Callable[[str], str], key: str, model_id: str, pred: str, baseline_id: str,
                baseline: str, human: str) -> dict:
    """Both orders, as llm_judge.py: the model as A against the baseline as B, then swapped."""
    ab = verdict(complete(judge_prompt(pred, baseline, human)), model_id, baseline_id)
    ba = verdict(complete(judge_prompt(baseline, pred, human)), baseline_id, model_id)
    return {"video_event_id": key, "ab_winner": ab, "ba_winner": ba}


def win_rate(judgments: list[dict], model_id: str) -> float:
    """Percent of the 2N verdicts the model won (ties and baseline wins are losses)."""
    if not judgments:
        raise LiveCCError("no judgments to score: judge some predictions first")
    wins = sum((j["ab_winner"] == model_id) + (j["ba_winner"] == model_id) for j in judgments)
    return 100 * wins / (2 * len(judgments))


def judgment_ok(record: dict) -> bool:
    return all(isinstance(record.get(k), str) for k in ("video_event_id", "ab_winner", "ba_winner"))


def model_id_from_judgments(path: Path, judgments: list[dict]) -> str:
    """The model the judgments name: llm_judge.py's file is BASELINE_MODEL.jsonl, and the winners are
    the two ids, so the model is the winner the file name ends with (ids may hold '_' themselves)."""
    stem = path.stem
    ids = {j[k] for j in judgments for k in ("ab_winner", "ba_winner")} - {TIE}
    named = [i for i in ids if len(stem) > len(i) + 1 and stem.endswith("_" + i)]
    if len(named) == 1:
        return named[0]
    baseline = [i for i in ids if stem.startswith(i + "_") and len(stem) > len(i) + 1]
    if not named and len(baseline) == 1:  # only the baseline ever won
        return stem[len(baseline[0]) + 1:]
    if not ids and "_" in stem:  # all ties: every model id scores 0
        return stem.split("_", 1)[1]
    raise LiveCCError(f"cannot tell the model from {path.name} and its winners ({', '.join(sorted(ids)) or 'none'}): "
                      "pass --model-id")


def judge_all(events: list, predictions: dict[str, str], baseline: dict[str, str], complete: Callable[[str], str],
              model_id: str, baseline_id: str, log) -> dict:
    """Judge every event with a prediction and a baseline caption that `log` (a ResultLog of
    judgments) does not hold yet, appending each judgment at once. Returns the counts and win rate."""
    from .harness import progress

    judged = [e for e in events if e.key in predictions and e.key in baseline]
    todo = [e for e in judged if e.key not in log.done]
    with progress(len(todo), f"judging {model_id} vs. {baseline_id}", "event") as bar:
        for event in todo:
            log.append(judge_event(complete, event.key, model_id, predictions[event.key], baseline_id,
                                   baseline[event.key], event.asr))
            bar.update(1)
    wanted = {e.key for e in judged}
    records = [r for r in log.records if r["video_event_id"] in wanted]
    return {"model_id": model_id, "baseline_id": baseline_id, "judged": len(records),
            "without_baseline": sum(e.key in predictions and e.key not in baseline for e in events),
            "win_rate": win_rate(records, model_id) if records else None}
