"""One submission's sandbox: a worker process inside bubblewrap, with limits.

What the sandbox sees (all read-only): the system's ``/usr``, the Python
installation and virtual environment, the course library ``src/`` and the two
grader files the worker needs (:mod:`autograder.wire`, :mod:`autograder.worker`),
and the course's model cache. Not the solutions, the hidden tests, the gradebook,
other submissions, the rest of ``autograder/``, the repository or the home folder.
It has a private writable ``/tmp`` (a size-limited tmpfs), no network
(``--unshare-all``: network, PID, IPC, UTS, user and cgroup namespaces), no
capabilities, a new session, and it is killed with its parent.

Limits (environment variables, read when a sandbox starts)::

    CLIPCOURSE_MEMORY_LIMIT   memory of each process (RLIMIT_DATA), default 4G
    CLIPCOURSE_PROCESS_LIMIT  processes and threads (pids cgroup when writable, and RLIMIT_NPROC), default 64
    CLIPCOURSE_FILE_LIMIT     size of any file written (RLIMIT_FSIZE), default 64M
    CLIPCOURSE_TMP_LIMIT      size of the private /tmp, default 256M
    CLIPCOURSE_OUTPUT_LIMIT   characters printed per cell or call (worker), default 200000
    CLIPCOURSE_CELL_TIMEOUT   seconds per cell and per call of a student's function, default 60
"""

from __future__ import annotations

import functools
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cloudpickle

from autograder.wire import WireClosed, load_data, recv_frame, send_frame

REPO = Path(__file__).resolve().parent.parent
HOME = "/home/student"
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


class SandboxUnavailable(RuntimeError):
    pass


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 4G, 512M)")
    return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))


def limits() -> dict:
    env = os.environ
    return {
        "memory": _size(env.get("CLIPCOURSE_MEMORY_LIMIT", "4G")),
        "processes": int(env.get("CLIPCOURSE_PROCESS_LIMIT", "64")),
        "file_size": _size(env.get("CLIPCOURSE_FILE_LIMIT", "64M")),
        "tmp": _size(env.get("CLIPCOURSE_TMP_LIMIT", "256M")),
        "timeout": float(env.get("CLIPCOURSE_CELL_TIMEOUT", "60")),
    }


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str:
    """'' when bubblewrap is installed and works here, else what is wrong."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    probe = subprocess.run([exe, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot create a sandbox here: {probe.stderr.strip()[:300]}"
    return ""


def _binds() -> list[str]:
    args: list[str] = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind", "/usr", "/usr"]
    for path in {os.path.realpath(sys.base_prefix), sys.base_prefix, sys.prefix}:
        if not path.startswith("/usr/"):
            args += ["--ro-bind", path, path]
    here = REPO / "autograder"
    for name in ("__init__.py", "wire.py", "worker.py"):
        args += ["--ro-bind", str(here / name), f"/opt/grader/autograder/{name}"]
    args += ["--ro-bind", str(REPO / "src"), "/opt/course/src"]
    cache = Path.home() / ".cache" / "clipcourse"
    if cache.is_dir():
        args += ["--ro-bind", str(cache), f"{HOME}/.cache/clipcourse"]
    return args


class Sandbox:
    """A worker serving one submission. ``unsafe=True`` runs it without bubblewrap (opt-out)."""

    def __init__(self, unsafe: bool = False):
        self.unsafe = unsafe
        self.limits = limits()
        self.proc: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="clipcourse-grader-"))  # host only: never bound inside
        self.address = str(self.dir / "worker.sock")
        self.cgroup: Path | None = None
        self.conn: socket.socket | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if not self.unsafe and bwrap_problem():
            raise SandboxUnavailable(bwrap_problem())
        if os.path.exists(self.address):
            os.unlink(self.address)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        listener.listen(4)
        fd = listener.fileno()
        env = {
            "PYTHONPATH": "/opt/grader:/opt/course/src",
            "HOME": HOME,
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "MPLBACKEND": "Agg",
            "CLIPCOURSE_WORKER_FD": str(fd),
            "CLIPCOURSE_OUTPUT_LIMIT": os.environ.get("CLIPCOURSE_OUTPUT_LIMIT", "200000"),
            "CLIPCOURSE_GRADING": "1",
        }
        python = [sys.executable, "-s", "-B", "-m", "autograder.worker"]
        if self.unsafe:
            env["PYTHONPATH"] = f"{REPO}{os.pathsep}{REPO / 'src'}"
            env["HOME"] = str(self.dir)
            cmd = python
        else:
            cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
                   *_binds(), "--proc", "/proc", "--dev", "/dev",
                   "--size", str(self.limits["tmp"]), "--tmpfs", "/tmp",
                   "--size", str(self.limits["tmp"]), "--tmpfs", f"{HOME}/work"]
            for key, value in env.items():
                cmd += ["--setenv", key, value]
            cmd += ["--chdir", f"{HOME}/work", *python]
        self.cgroup = self._make_cgroup()
        log = os.environ.get("CLIPCOURSE_WORKER_LOG")  # debugging the grader: the worker's own stderr
        with open(log, "ab") if log else open(os.devnull, "wb") as errors:
            self.proc = subprocess.Popen(cmd, env=env, pass_fds=[fd], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=errors,
                                         preexec_fn=self._preexec, cwd=self.dir)
        listener.close()  # the worker holds it now

    def _make_cgroup(self) -> Path | None:
        if not (PIDS_CGROUP / "cgroup.procs").exists() or not os.access(PIDS_CGROUP, os.W_OK):
            return None
        path = PIDS_CGROUP / f"clipcourse-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(self.limits["processes"] + 16))  # + bwrap and python's own threads
        except OSError:
            return None
        return path

    def _preexec(self) -> None:
        os.setsid()
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))
        lim = self.limits
        for which, value in ((resource.RLIMIT_DATA, lim["memory"]), (resource.RLIMIT_FSIZE, lim["file_size"]),
                             (resource.RLIMIT_NPROC, lim["processes"] + 16), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))

    def stop(self) -> None:
        """End the worker and every process it started (its session, its PID namespace, its cgroup)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self.cgroup is not None:
            for _ in range(50):
                pids = (self.cgroup / "cgroup.procs").read_text().split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
            self.cgroup = None
        if os.path.exists(self.address):
            os.unlink(self.address)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- requests -------------------------------------------------------------------------------
    def request(self, message: dict, timeout: float | None) -> dict:
        if self.conn is None:
            deadline = time.monotonic() + 120
            while True:
                try:
                    self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self.conn.connect(self.address)
                    break
                except OSError:
                    self.conn.close()
                    self.conn = None
                    if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                        raise WireClosed("the sandbox did not start") from None
                    time.sleep(0.05)
        self.conn.settimeout(timeout)
        send_frame(self.conn, cloudpickle.dumps(message))
        return load_data(recv_frame(self.conn))

    def execute(self, source: str, name: str, setup: bool = False, graded: list[str] | None = None) -> dict:
        """Run one cell; on a time limit or a dead worker the reply says which, and the worker is stopped."""
        try:
            return self.request({"op": "exec", "source": source, "name": name, "setup": setup, "graded": graded},
                                timeout=self.limits["timeout"] + (120 if setup else 0))
        except TimeoutError:
            self.stop()
            return {"kind": "limit", "limit": "time", "seconds": self.limits["timeout"]}
        except (WireClosed, OSError):
            self.stop()
            return {"kind": "limit", "limit": "ended", "seconds": 0}

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return self.request({"op": "ping"}, timeout=5).get("kind") == "pong"
        except (TimeoutError, WireClosed, OSError):
            return False
