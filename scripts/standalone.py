"""`make airflow`: `airflow standalone` that Ctrl-C stops cleanly, on the port the environment names.

A terminal's Ctrl-C sends SIGINT to every process of the foreground process group. When
standalone's components get it too, the scheduler re-enters its shutdown handler and hangs at
"Shutting down components", and its idle workers (~130 MB each) stay behind until SIGKILL. So
standalone runs in a session of its own and only the standalone process is signalled: it stops
its components itself (~4 s). Whatever is still alive in that session after the deadline is
killed. tests/e2e/standalone.py starts and stops it the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def start(env: dict | None = None, **popen_kwargs) -> subprocess.Popen:
    """`airflow standalone` in its own session (no terminal signal reaches its components)."""
    env = dict(os.environ if env is None else env)
    # standalone starts its components as `airflow ...` subprocesses: the venv's bin must be on PATH
    env["PATH"] = f"{Path(AIRFLOW).parent}{os.pathsep}{env.get('PATH', '')}"
    # SIGINT is how it is stopped: default in the child even where it was started ignored (a `cmd &`
    # of a non-interactive shell starts with SIGINT ignored, and Python then never raises KeyboardInterrupt)
    return subprocess.Popen([AIRFLOW, "standalone"], env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen_kwargs)


def _session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (zombies excluded: they hold no memory and await their reaper)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z" and os.getsid(int(entry)) == sid:
                    members.append(int(entry))
            except OSError:  # gone meanwhile
                pass
    return members


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGINT to standalone alone, wait; then SIGTERM/SIGKILL whatever is left of its session."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_members(proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        while _session_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _session_members(proc.pid):
            return


def main() -> int:
    host = os.environ.get("AIRFLOW__API__HOST", "127.0.0.1")
    port = os.environ.get("AIRFLOW__API__PORT", "8080")
    home = os.environ.get("AIRFLOW_HOME", "airflow_home")
    print(f"Airflow UI: http://{host}:{port}  user: admin  (Ctrl-C stops it)", flush=True)
    print(f"password: {home}/simple_auth_manager_passwords.json.generated (written at first start)", flush=True)
    def interrupted(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: it may have started ignored
        signal.signal(sig, interrupted)
    proc = start()
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping airflow standalone ...", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        stop(proc)
        print("stopped.", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
