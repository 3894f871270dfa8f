"""The LLM judge of LiveSports-3K CC, through any OpenAI-compatible chat endpoint (urllib only).

Follows showlab/livecc `evaluation/livesports3kcc/llm_judge.py`: for each event the judge sees the
model's and the baseline's commentary in both orders (A/B, then B/A) with the human commentary;
a reply naming "Commentary A" (else "Commentary B") picks that one, anything else is a tie; ties
count as losses; win rate = wins / 2N, in percent. Judgments are written in its format
{video_event_id, ab_winner, ba_winner} (winners are model ids or "tie"), to BASELINE_MODEL.jsonl.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LiveCCError

TIE = "tie"


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


@dataclass
class JudgeClient:
    """POST {url}/chat/completions with a bearer key; retries network errors, timeouts, HTTP 429
    and 5xx with exponential backoff, then raises JudgeError."""

    url: str
    model: str
    key: str
    retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    def _request(self, prompt: str) -> urllib.request.Request:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "seed": 42}
        return urllib.request.Request(self.endpoint, data=json.dumps(body).encode(), method="POST",
                                      headers={"Content-Type": "application/json",
                                               "Authorization": f"Bearer {self.key}"})

    def complete(self, prompt: str) -> str:
        reason = ""
        for attempt in range(self.retries):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with urllib.request.urlopen(self._request(prompt), timeout=self.timeout_s) as resp:
                    return json.loads(resp.read())["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise JudgeError(f"judge at {self.endpoint} refused the request (HTTP {exc.code} {exc.reason}): "
                                     "check --judge-model and the key") from exc
                reason = f"HTTP {exc.code} {exc.reason}"
            except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
                reason = str(getattr(exc, "reason", exc))
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                reason = f"not an OpenAI chat completion reply ({exc!r})"
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


def model_id_from_judgments(path: Path) -> str:
    """llm_judge.py names the file BASELINE_MODEL.jsonl: the model id is what follows the first '_'."""
    stem = path.stem
    if "_" not in stem:
        raise LiveCCError(f"cannot tell the model from the file name {path.name}: pass --model-id")
    return stem.split("_", 1)[1]


def judge_all(events: list, predictions: dict[str, str], baseline: dict[str, str], complete: Callable[[str], str],
              model_id: str, baseline_id: str, log) -> dict:
    """Judge every event with a prediction and a baseline caption that `log` (a ResultLog of
    judgments) does not hold yet, appending each judgment at once. Returns the counts and win rate."""
    from tqdm import tqdm

    judged = [e for e in events if e.key in predictions and e.key in baseline]
    todo = [e for e in judged if e.key not in log.done]
    for event in tqdm(todo, desc=f"judging {model_id} vs. {baseline_id}", unit="event"):
        log.append(judge_event(complete, event.key, model_id, predictions[event.key], baseline_id,
                               baseline[event.key], event.asr))
    wanted = {e.key for e in judged}
    records = [r for r in log.records if r["video_event_id"] in wanted]
    return {"model_id": model_id, "baseline_id": baseline_id, "judged": len(records),
            "without_baseline": sum(e.key in predictions and e.key not in baseline for e in events),
            "win_rate": win_rate(records, model_id) if records else None}
