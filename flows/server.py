"""Prefect's temporary server, started before the flows are imported.

Without ``PREFECT_API_URL`` Prefect starts a temporary server at a flow's first call to its
API: it imports its whole server app into this process (~3 s, only to reach the class that
starts the server), starts the server's process and waits for it (~5 s), all after this
process has imported the flows. ``molvae run`` starts that process itself, first thing
(``start``: the command line and settings of Prefect 3.8's ``SubprocessASGIServer``), so it
boots on the other core while this process imports the flows and checks the run; the flow
then runs against it as against any server at a URL (``serving``), and it stops when this
process exits.

The server runs in a session of its own, so a terminal's Ctrl-C (SIGINT to the whole process
group) reaches this process only: the flow is interrupted with its server still there to
record it, and the server stops after (at exit). A watchdog thread in the server's process
ends it when this process is gone without a word (``kill -9``): nothing is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

_EARLY: list[tuple[str, subprocess.Popen]] = []  # (API URL, process) of the server started

# `python -m uvicorn ARGS`, ended when the process that started it is gone (its parent changes)
_WATCHED_UVICORN = """\
import os, runpy, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["uvicorn", *sys.argv[1:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def start() -> str | None:
    """Start the temporary server's process now, when a run will use one: its API URL, or
    None when none was started (a server set, ephemeral servers off, or started already)."""
    import prefect
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, get_current_settings

    if _EARLY or PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    process = subprocess.Popen(
        [sys.executable, "-c", _WATCHED_UVICORN, "--app-dir", str(prefect.__module_path__.parent),
         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "error", "--lifespan", "on"], env=env,
        start_new_session=True)
    atexit.register(_stop, process)
    _EARLY.append((f"http://127.0.0.1:{port}/api", process))
    return _EARLY[-1][0]


@contextlib.contextmanager
def serving():
    """Within: Prefect's client uses the server ``start`` started, once it answers. Nothing
    changes when none was started, or when it does not come up (then Prefect starts its
    own, with its own error if that fails too)."""
    url = _EARLY[0][0] if _EARLY and _answers(*_EARLY[0]) else None
    if url is None:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def _answers(url: str, process: subprocess.Popen) -> bool:
    """Wait until the server answers (True), or its process ends or the time Prefect allows
    its temporary server runs out (False, the process stopped)."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    deadline = time.monotonic() + PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    _stop(process)
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
