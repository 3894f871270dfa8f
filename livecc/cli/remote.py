"""`livecc narrate FILE --server ws://host:port`: the same run with the session on a server. A wrong
token, an unreachable or a busy server is one line (RemoteError) and exit 2."""

from __future__ import annotations

import sys

SERVER_ONLY = ("query", "memory_mb")  # the query goes as the instruction; host memory is the server's to set


def remote_begin(args, info, fields: dict):
    """Connect, send the settings a local run would use; returns `(run, chunk seconds)` as `begin` does."""
    from livecc.client.narrate import remote_narrate
    from livecc.client.session import RemoteSession

    remote = RemoteSession.connect(args.server, args.token)
    try:
        settings = remote.update(fields["query"], {k: v for k, v in fields.items() if k not in SERVER_ONLY})
    except BaseException:
        remote.close()
        raise

    def run(files):
        try:
            yield from remote_narrate(remote, args.video, info, files, fmt=args.frames, realtime=args.realtime)
        finally:
            for warning in remote.warnings:
                print(f"livecc: warning: the server said: {warning}", file=sys.stderr)

    return run, settings["chunk_frames"] / settings["fps"]
