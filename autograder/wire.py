"""The wire between the trusted grader and a submission's sandboxed worker.

Frames are an 8-byte length and a payload. Two directions, two rules:

* trusted -> sandbox: ``cloudpickle`` (the grader's own objects: arguments, a test's
  model class, an optimiser). Unpickling them in the sandbox is harmless: the
  sandbox is the untrusted side.
* sandbox -> trusted: :func:`dump_data` / :func:`load_data`, ``torch.save`` and
  ``torch.load(weights_only=True)``, which only ever rebuilds tensors, numbers,
  strings, ``None``, bools and lists/tuples/dicts of them. Nothing the student's
  code returns is ever unpickled as an arbitrary object on the trusted side.

This file is also bound read-only into the sandbox (the worker imports it).
"""

from __future__ import annotations

import io
import socket
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!Q")
MAX_FRAME = 1 << 31  #: 2 GiB: a larger frame is a broken or hostile peer


class WireClosed(ConnectionError):
    """The other end went away (the sandbox ended, or a limit stopped it)."""


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(HEADER.pack(len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise WireClosed("the sandboxed process closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if size > MAX_FRAME:
        raise WireClosed(f"frame of {size} bytes refused")
    return _recv_exact(sock, size)


def dump_data(value) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def load_data(payload: bytes):
    """Load what the sandbox sent: data only (``weights_only=True``), never code."""
    import torch

    return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")


# Markers the trusted side puts in a call's arguments (pickled by reference in both processes).
@dataclass(frozen=True)
class Callback:
    """A callable that stays on the trusted side: the sandbox calls back to run it."""

    id: int


@dataclass(frozen=True)
class GradedRef:
    """The student's own graded function ``name`` (a proxy passed back into the sandbox)."""

    name: str


@dataclass(frozen=True)
class HandleRef:
    """An object living in the sandbox (returned earlier by the student's code)."""

    id: int


def flatten_tensors(value, out: list | None = None) -> list:
    """Every exact ``torch.Tensor`` in ``value`` (lists, tuples, dict values), in a fixed order."""
    import torch

    out = [] if out is None else out
    if type(value) is torch.Tensor:
        out.append(value)
    elif type(value) in (list, tuple):
        for item in value:
            flatten_tensors(item, out)
    elif type(value) is dict:
        for item in value.values():
            flatten_tensors(item, out)
    return out


#: In the worker: the student's namespace and the objects handed out as handles, so that a
#: proxy or a handle nested anywhere in a call's arguments unpickles to the real object there.
NAMESPACE: dict = {}
HANDLES: dict = {}


def _graded(name: str):
    return NAMESPACE[name]


def _handle(hid: int):
    return HANDLES[hid]
