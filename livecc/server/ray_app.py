"""The ASGI app as a Ray Serve deployment: each replica loads the model once and holds up to K
sessions; one WebSocket stays on the replica that accepted it.

Routing: a replica takes exactly K connections (`max_ongoing_requests`). Serve's router only sends a
request to a replica that accepts it, so a session always lands on a free slot if there is one, and
none is ever over-assigned. With every slot taken Serve would queue the connection: the gate in
Serve's proxy (gate.py) refuses it as busy instead. Autoscaling, when asked, targets K sessions a
replica. Draining: the driver tells a small named actor to stop; every replica waits on it, tells
its sessions "server stopping", and reports back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import ray
from ray import serve

from engine.errors import LiveCCError

from .gate import CALLBACK
from .settings import ServerSettings

LOG = logging.getLogger(__name__)
APP_NAME = "livecc"
CONTROL = "livecc-control"
NAMESPACE = "livecc"
PROXY_START_S = 240.0  # after Serve's own 60 s: a loaded 2-core node was seen to need more
# Serve kills a proxy that has not answered its ready check 5 s after starting; on a loaded node a
# new Python worker takes longer than that, and the proxy never comes up. Read by Ray's processes.
RAY_DEFAULTS = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30"}
# Serve's proxy runs the gate (busy refusals, a clear error when a replica dies); read by the proxy.
PROXY_ENV = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": CALLBACK}


def init_ray(**options) -> None:
    """ray.init with Serve's start-up checks lengthened and the gate in its proxy (a setting already in
    the environment wins; a local Ray's processes inherit these)."""
    for name, value in (RAY_DEFAULTS | PROXY_ENV).items():
        os.environ.setdefault(name, value)
    ray.init(**options)


@ray.remote(num_cpus=0)
class Control:
    """The drain signal replicas wait on, and the count of replicas that have drained."""

    def __init__(self):
        self._stop = asyncio.Event()
        self._drained = asyncio.Condition()
        self._count = 0

    async def stop(self) -> None:
        self._stop.set()

    async def wait_stop(self) -> None:
        await self._stop.wait()

    async def drained(self) -> None:
        async with self._drained:
            self._count += 1
            self._drained.notify_all()

    async def wait_drained(self, replicas: int, timeout: float) -> int:
        """How many replicas have drained, once all have or `timeout` has passed."""
        async with self._drained:
            try:
                await asyncio.wait_for(self._drained.wait_for(lambda: self._count >= replicas), timeout)
            except asyncio.TimeoutError:
                LOG.warning("%d of %d replicas drained in %.0f s", self._count, replicas, timeout)
            return self._count


@serve.deployment(name="LiveCC")
@serve.ingress()
class LiveCCDeployment:
    def __init__(self, settings: ServerSettings):
        from .replica import Replica

        logging.basicConfig(level=logging.WARNING)
        self.replica = Replica(settings, name=ray.get_runtime_context().get_actor_name())
        self._watch: asyncio.Task | None = None

    def __serve_build_asgi_app__(self):
        from .app import create_app

        app = create_app(self.replica)
        self._watch = asyncio.get_event_loop().create_task(self._drain_on_stop(app.state.hub))
        return app

    async def _drain_on_stop(self, hub) -> None:
        try:
            control = ray.get_actor(CONTROL, namespace=NAMESPACE)
        except ValueError:  # deployed without `livecc serve`'s driver: Ray's own shutdown applies
            return
        await control.wait_stop.remote()
        await hub.drain()
        await control.drained.remote()


def _wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Until the proxy accepts connections on `host:port`; LiveCCError naming the fix after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise LiveCCError(f"Ray Serve's HTTP proxy did not start on {host}:{port} within "
                                  f"{timeout_s + 60:.0f} s: check that the port is free and the node not "
                                  "overloaded, then start again") from None
            time.sleep(0.5)


def deployment_options(settings: ServerSettings, replicas: int, max_replicas: int | None = None,
                       num_gpus: float = 0.0, num_cpus: float = 1.0) -> dict:
    """The deployment's Serve options: K sessions a replica, and Serve's autoscaling between `replicas`
    and `max_replicas` (when larger) on the number of sessions, K a replica."""
    options = {"max_ongoing_requests": settings.sessions, "graceful_shutdown_timeout_s": 5,
               "ray_actor_options": {"num_gpus": num_gpus, "num_cpus": num_cpus}}
    if max_replicas is None or max_replicas <= replicas:
        return options | {"num_replicas": replicas}
    return options | {"autoscaling_config": {"min_replicas": replicas, "max_replicas": max_replicas,
                                             "target_ongoing_requests": settings.sessions}}


def deploy(settings: ServerSettings, replicas: int, host: str, port: int, num_gpus: float = 0.0,
           num_cpus: float = 1.0, max_replicas: int | None = None):
    """Start Serve on `host:port` and run the deployment; returns the drain control actor."""
    control = Control.options(name=CONTROL, namespace=NAMESPACE, get_if_exists=True).remote()
    http = {"host": host, "port": port}
    # On a cluster started elsewhere, the proxies get the gate from the controller's environment.
    controller = {"runtime_env": {"env_vars": PROXY_ENV}}
    try:
        serve.start(http_options=http, controller_options=controller)
    except TimeoutError:  # Serve gives its HTTP proxy 60 s to start; a loaded node can take longer
        serve.start(http_options=http)  # the controller is up: this connects to it
        _wait_for_port(host, port, PROXY_START_S)
    options = deployment_options(settings, replicas, max_replicas, num_gpus, num_cpus)
    serve.run(LiveCCDeployment.options(**options).bind(settings), name=APP_NAME, route_prefix="/")
    return control


def drain(control, timeout: float = 20.0) -> None:
    """Tell every replica to drain, wait (at most `timeout`) until they have, then remove the app."""
    replicas = running_replicas()
    ray.get(control.stop.remote())
    ray.get(control.wait_drained.remote(replicas, timeout))
    serve.delete(APP_NAME)


def running_replicas() -> int:
    """How many replicas run now (autoscaling changes it)."""
    deployment = serve.status().applications[APP_NAME].deployments[LiveCCDeployment.name]
    return deployment.replica_states.get("RUNNING", 0)
