"""What a server allows: its limits, its token, and which session settings a client may choose."""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from dataclasses import dataclass, fields, replace

from engine.defaults import KV_BUDGET, MAX_PIXELS_LIMIT, min_kv_budget
from engine.errors import LiveCCError

# SessionConfig fields a client may set through session.update (no server paths, no server memory).
CLIENT_SETTINGS = ("max_new_tokens", "answer_max_new_tokens", "repetition_penalty", "temperature", "top_p", "seed",
                   "max_pixels", "min_pixels", "live", "kv_budget", "positions", "video_window_s", "memory_tokens",
                   "memory", "topk", "router_strategy", "eos_base", "eos_step")
MAX_REPLY_TOKENS = 8192


class ServerConfigError(LiveCCError):
    """The server was asked to run in a way that is unsafe or impossible."""

    code = "server-config"


@dataclass(frozen=True)
class ServerSettings:
    """One replica's limits. `sessions`: live sessions it holds at once; a client past them is refused."""

    model: str
    token: str | None = None
    sessions: int = 1
    max_message_bytes: int = 4 * 2**20  # a 1080p PNG frame fits; the model takes ~0.3 MP
    max_frames_per_s: float = 30.0  # frames a session may send per wall-clock second (a file narrates ahead)
    idle_timeout_s: float = 60.0  # a session that sends nothing accepted for this long is closed
    send_timeout_s: float = 10.0  # a client that takes longer than this to read one message is dropped
    max_pending_messages: int = 1024  # messages waiting for a slow reader before it is dropped
    kv_budget: int | None = None  # tokens of KV a session holds, the most it may ask for (None: the engine's default)
    video_window_s: float | None = None  # video a compaction keeps (s), unless a client asks (None: the engine's)
    device: str | None = None
    speech: str = "none"  # the voice for clients that ask for audio (tts.parse_voice forms; none: no speech)

    def __post_init__(self):
        if self.sessions < 1:
            raise ServerConfigError(f"--sessions-per-replica {self.sessions} must be 1 or more")
        for flag, value in (("--idle-timeout", self.idle_timeout_s), ("--max-frames-per-s", self.max_frames_per_s)):
            if not (math.isfinite(value) and value > 0):  # 0 would end every session at once, or divide by it
                raise ServerConfigError(f"{flag} {value} must be a finite number over 0")
        if self.video_window_s is not None and not (math.isfinite(self.video_window_s) and self.video_window_s > 0):
            raise ServerConfigError(f"--video-window {self.video_window_s} must be a finite number of seconds over 0")
        if self.kv_budget is not None and self.kv_budget < min_kv_budget():
            raise ServerConfigError(f"--kv-budget {self.kv_budget} is too small for the default comments, answers and "
                                    f"text memory: use at least {min_kv_budget()} (default {KV_BUDGET})")

    def allows(self, token: str | None) -> bool:
        """Constant-time token check; a server without a token admits everyone (loopback only)."""
        if self.token is None:
            return True
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())


def check_bind(host: str, token: str | None) -> None:
    """Only a loopback address may be served without a token."""
    if token:
        return
    if host == "localhost" or _is_loopback(host):
        return
    raise ServerConfigError(f"refusing to serve {host} without a token: pass --token (or set LIVECC_SERVER_TOKEN), "
                            "or bind 127.0.0.1")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_token(headers) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def client_config(base, settings: object, kv_budget: int):
    """`base` (a SessionConfig) with the client's settings; LiveCCError names what is refused.
    `kv_budget`: the KV tokens a session holds on this server (the replica's), the most it may ask."""
    if not isinstance(settings, dict):
        raise LiveCCError("session.settings must be an object")
    unknown = sorted(set(settings) - set(CLIENT_SETTINGS))
    if unknown:
        raise LiveCCError(f"unknown or server-only settings: {', '.join(unknown)}; allowed: {', '.join(CLIENT_SETTINGS)}")
    types = {f.name: f.type for f in fields(base)}
    typed = {name: _typed(name, value, types[name]) for name, value in settings.items()}
    try:
        config = replace(base, **typed)
    except (TypeError, ValueError) as exc:
        raise LiveCCError(f"bad settings: {exc}") from None
    _check_limits(config, kv_budget)
    return config


def _typed(name: str, value: object, kind: str):
    """A client's setting as its field's type: bools are bools, whole numbers fit 32 bits, other
    numbers are finite; LiveCCError otherwise (before the engine thread would trip on it)."""
    if value is None and kind.endswith("| None"):
        return None
    kind = kind.removesuffix(" | None")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool" and isinstance(value, bool) or kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and number and (isinstance(value, int) or math.isfinite(value) and value.is_integer()) \
            and abs(value) < 2**31:
        return int(value)  # JSON has one number type: a client that keeps numbers as doubles sends 16.0
    if kind == "float" and number:
        try:
            if math.isfinite(value := float(value)):
                return value
        except OverflowError:  # an integer of hundreds of digits
            pass
    raise LiveCCError(f"setting {name} must be {_KINDS.get(kind, kind)}, not {str(value)[:40]!r}")


_KINDS = {"bool": "true or false", "int": "a whole number under 2**31", "float": "a finite number", "str": "text"}


def _check_limits(config, kv_budget: int) -> None:
    if config.max_pixels > MAX_PIXELS_LIMIT:
        raise LiveCCError(f"max_pixels {config.max_pixels} is over Qwen2-VL's limit of {MAX_PIXELS_LIMIT}")
    if max(config.max_new_tokens, config.answer_max_new_tokens) > MAX_REPLY_TOKENS:
        raise LiveCCError(f"replies are limited to {MAX_REPLY_TOKENS} tokens on this server")
    if config.kv_budget > kv_budget:
        raise LiveCCError(f"kv_budget {config.kv_budget} is over this server's {kv_budget}")


class FrameRate:
    """A token bucket: `rate` frames a second, bursts of one second. `delay()` says how long to wait
    before the next frame may be read (the session is throttled, not cut off)."""

    def __init__(self, rate: float, clock=time.monotonic):
        self.rate, self._clock = rate, clock
        self._tokens, self._last = rate, clock()

    def delay(self) -> float:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        wait = (1 - self._tokens) / self.rate
        self._tokens -= 1  # the frame is read after the wait: its token is spent now
        return wait
