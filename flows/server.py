"""Prefect's temporary server, started before the flows are imported.

Without ``PREFECT_API_URL`` Prefect starts a temporary server at a flow's first call to its
API and waits for it (~5 s on a 2-core machine, all of it after this process has imported
the flows). ``molvae run`` starts that server's process first thing instead (``start``), so it
boots on the other core while this process imports the flows and checks the run (~4 s), and
``hand_over`` gives it to the server object Prefect's client uses. This follows Prefect
3.8's ``SubprocessASGIServer`` (one object per port; the process made by
``_run_uvicorn_command``, the same command line as here): Prefect's own ``start`` still waits
for it to answer, stops it at exit, and starts its own if this one cannot take its port.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys

_EARLY: list[tuple[int, subprocess.Popen]] = []  # (port, process) started, not yet handed over


def start() -> None:
    """Start the temporary server's process now, when a run will use one."""
    import prefect
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, get_current_settings

    if _EARLY or PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "error", "--lifespan", "on"], env=env)
    atexit.register(_stop, process)  # if no flow ever takes it
    _EARLY.append((port, process))


def hand_over() -> None:
    """Give the process ``start`` started to the server object Prefect's client will use
    (before a flow's first call); a no-op when none was started or Prefect runs its own."""
    if not _EARLY:
        return
    from prefect.server.api.server import SubprocessASGIServer

    port, process = _EARLY.pop()
    server = SubprocessASGIServer()
    if server.running or process.poll() is not None:
        return  # Prefect starts (or has) its own; ours stops at exit
    own = server._run_uvicorn_command

    def first_then_own() -> subprocess.Popen:
        server._run_uvicorn_command = own  # a restart (its port taken): Prefect's own
        return process

    server.port = port
    server._run_uvicorn_command = first_then_own


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
