"""`livecc serve`: the engine as a WebSocket server (docs/protocol.md), on Ray Serve, or under
uvicorn alone with --no-ray (one process, one replica: what a GPU machine without Ray runs).
It refuses a non-loopback address without a token. SIGTERM drains: every session is told "server
stopping" and the process exits within 30 s."""

from __future__ import annotations

import errno
import json
import signal
import socket
import threading

from engine import flags


def add_serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve the model to remote clients over WebSocket (Ray Serve)",
                       description="Run LiveCC as a server: one WebSocket per session (docs/protocol.md).")
    s.add_argument("--model", default=flags.get("LIVECC_MODEL"), help="model id or folder (default $LIVECC_MODEL)")
    s.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if available)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s; others need --token)")
    s.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    s.add_argument("--token", default=flags.get("LIVECC_SERVER_TOKEN"),
                   help="clients must send this token (default $LIVECC_SERVER_TOKEN)")
    s.add_argument("--replicas", type=int, default=1, help="model replicas, one GPU each when CUDA is there")
    s.add_argument("--max-replicas", type=int, default=None,
                   help="autoscale between --replicas and this many replicas on the number of sessions "
                        "(Ray Serve's autoscaling, --sessions-per-replica a replica; default: no autoscaling)")
    s.add_argument("--sessions-per-replica", type=int, default=1, help="live sessions a replica holds at once")
    s.add_argument("--address", default=None, help="join this Ray cluster (default: start Ray here)")
    s.add_argument("--num-cpus", type=int, default=None, help="CPUs a local Ray may use (default: all)")
    s.add_argument("--kv-budget", type=int, default=None, metavar="TOKENS",
                   help="KV cache a session holds, the most a client may ask for (default 16384, or what fits "
                        "the GPU); a smaller one fits more live sessions (docs/engine-core.md)")
    s.add_argument("--video-window", type=float, default=None, metavar="S",
                   help="seconds of video a session's compaction keeps unless its client asks otherwise (default 16); "
                        "a shorter one re-prefills less: more live sessions a GPU (docs/engine-core.md)")
    s.add_argument("--no-ray", action="store_true", help="serve with uvicorn in this process (one replica)")
    s.add_argument("--idle-timeout", type=float, default=60.0, help="close a session idle this long (s)")
    s.add_argument("--max-frames-per-s", type=float, default=30.0, help="frames a session may send per second")
    s.add_argument("--speech", default="none", metavar="VOICE",
                   help="speak the replies to clients that ask for audio: chattts (espeak-ng when it cannot load), "
                        "chattts:SEED, a ChatTTS seed or name, espeak, espeak:VOICE, or none (default %(default)s)")
    s.add_argument("--ssl-certfile", default=None, help="TLS certificate (with --no-ray; else use a proxy)")
    s.add_argument("--ssl-keyfile", default=None, help="TLS key (with --no-ray)")


def server_settings(args):
    from livecc.server.settings import ServerSettings, check_bind
    from .checks import bad_option

    check_bind(args.host, args.token)
    if args.replicas < 1 or not 0 <= args.port < 65536:
        raise bad_option("--replicas must be 1 or more and --port in 0..65535")
    if args.max_replicas is not None and (args.no_ray or args.max_replicas < args.replicas):
        raise bad_option("--max-replicas autoscales Ray Serve replicas: give at least --replicas, without --no-ray")
    check_tls(args)
    if args.port and (args.no_ray or args.address is None):  # (a cluster's proxies bind on its own nodes)
        check_port_free(args.host, args.port)
    return ServerSettings(args.model, token=args.token or None, sessions=args.sessions_per_replica,
                          idle_timeout_s=args.idle_timeout, max_frames_per_s=args.max_frames_per_s, device=args.device,
                          speech=args.speech, kv_budget=args.kv_budget, video_window_s=args.video_window)


def check_tls(args) -> None:
    """TLS is uvicorn's (--no-ray): refuse it on Ray Serve, where it would be ignored, and refuse files
    that cannot be read before the model loads."""
    from .checks import bad_option

    given = [(flag, path) for flag, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile))
             if path is not None]
    if given and not args.no_ray:
        raise bad_option(f"{given[0][0]} is served by --no-ray only: add --no-ray, or put a TLS proxy in front of "
                         "Ray Serve")
    if args.ssl_keyfile is not None and args.ssl_certfile is None:
        raise bad_option("--ssl-keyfile needs --ssl-certfile")
    for flag, path in given:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise bad_option(f"cannot read {flag} {path} ({exc.strerror or exc})") from None


def check_port_free(host: str, port: int) -> None:
    """Refuse, in one line and before the model or Ray starts, a port that something here already
    serves (the server would fail later with Ray's or uvicorn's traceback)."""
    from .checks import bad_option

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # an unknown host: the server says so itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: old connections don't count
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise bad_option(f"port {port} on {host} is in use: choose another with --port "
                                 "(--port 0 picks a free one with --no-ray)") from None


def cmd_serve(args) -> int:
    settings = server_settings(args)
    if args.no_ray:
        return _serve_uvicorn(args, settings)
    return _serve_ray(args, settings)


def _ready(args, how: str, port: int | None = None) -> None:
    """One JSON line once clients can connect (the bound port, when --port 0 let the system pick)."""
    print(json.dumps({"serving": f"ws://{args.host}:{port or args.port}", "via": how}), flush=True)


def _serve_uvicorn(args, settings) -> int:
    from livecc.server.local import uvicorn_server
    from livecc.server.replica import Replica

    server = uvicorn_server(Replica(settings), args.host, args.port, args.ssl_certfile, args.ssl_keyfile,
                            on_ready=lambda port: _ready(args, "uvicorn", port))
    server.run()
    return 0


def _serve_ray(args, settings) -> int:
    import ray

    from livecc.server.ray_app import deploy, drain, init_ray

    gpus = _gpus_per_replica()
    ours = signal.getsignal(signal.SIGTERM)
    init_ray(address=args.address, num_cpus=args.num_cpus if args.address is None else None,
             include_dashboard=False, log_to_driver=False)
    signal.signal(signal.SIGTERM, ours)  # ray.init puts its own exit there: SIGTERM must drain first
    control = None
    try:
        control = deploy(settings, args.replicas, args.host, args.port, num_gpus=gpus, max_replicas=args.max_replicas)
        _ready(args, "ray")
        threading.Event().wait()  # until a stop signal (livecc.cli.signals raises it here)
    except KeyboardInterrupt:  # a stop signal: drain, then a clean exit
        pass
    finally:
        if control is not None:
            drain(control)
        ray.shutdown()
    return 0


def _gpus_per_replica() -> float:
    try:
        import torch
    except ImportError:
        return 0.0
    return 1.0 if torch.cuda.is_available() else 0.0
