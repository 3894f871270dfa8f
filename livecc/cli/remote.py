"""`livecc narrate|ask FILE --server ws://host:port` (and `narrate --webcam/--screen`): the same run
with the session on a server. A wrong token, an unreachable or a busy server is one line
(RemoteError) and exit 2. Nothing here imports torch: a client-only install runs it."""

from __future__ import annotations

import sys

from engine.defaults import KV_BUDGET, VIDEO_WINDOW_S

SERVER_ONLY = ("query", "memory_mb")  # the query goes as the instruction; host memory is the server's to set
# Left at these, the server's own apply (`livecc serve --kv-budget`, `--video-window`).
SERVER_DEFAULTS = {"kv_budget": KV_BUDGET, "video_window_s": VIDEO_WINDOW_S}


def connect(args, fields: dict, speak: bool = False):
    """A session on the server with the settings a local run would use; `speak`: the server's voice
    says the replies (a server without one: RemoteError, one line)."""
    from livecc.client.session import RemoteSession

    remote = RemoteSession.connect(args.server, args.token)
    try:
        remote.update(fields["query"], server_settings(fields), speak or None)
    except BaseException:
        remote.close()
        raise
    return remote


def server_settings(fields: dict) -> dict:
    """The session settings the server takes from a client: a budget or a window left at the engine's
    default is not sent, so a server that chose its own (for more live sessions) keeps it."""
    return {k: v for k, v in fields.items()
            if k not in SERVER_ONLY and not (k in SERVER_DEFAULTS and v == SERVER_DEFAULTS[k])}


def _warn(line: str) -> None:
    print(f"livecc: warning: {line}", file=sys.stderr)


def _server_warnings(remote) -> None:
    for warning in remote.warnings:
        _warn(f"the server said: {warning}")


def remote_begin(args, info, fields: dict, speak: bool = False):
    """Connect, send the settings a local run would use; returns `(run, chunk seconds)` as `begin` does."""
    from livecc.client.narrate import remote_narrate

    remote = connect(args, fields, speak)

    def run(files):
        try:
            yield from remote_narrate(remote, args.video, info, files, fmt=args.frames, realtime=args.realtime)
        finally:
            _server_warnings(remote)

    return run, remote.settings["chunk_frames"] / remote.settings["fps"]


def remote_live_begin(args, source, fields: dict):
    """`remote_begin` for a camera or the screen: its frames go up as the desktop app's do (RemoteStream)."""
    from engine.output.narrate import narrate_live
    from livecc.client.live import RemoteStream, ServerAddress

    remote = connect(args, fields)  # a refusal is one line, before any file opens
    stream = RemoteStream(ServerAddress(args.server, args.token or ""), fields["query"], server_settings(fields),
                          args.frames, spare=remote)

    def run(files):
        try:
            yield from narrate_live(stream, source, files)
        finally:
            remote.close()  # when the source failed to start, the stream never took the connection
            _server_warnings(remote)

    return run, remote.settings["chunk_frames"] / remote.settings["fps"]


def remote_ask_events(args, info, at: float, fields: dict):
    """Connect and set up (errors here come before any output); the events of `livecc ask` over the server."""
    from livecc.client.ask import remote_ask

    remote = connect(args, fields)

    def events():
        try:
            yield from remote_ask(remote, args.video, info, args.question, at, fmt=args.frames, warn=_warn)
        finally:
            _server_warnings(remote)

    return events()
