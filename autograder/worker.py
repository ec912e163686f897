"""The untrusted side: runs one submission's set-up and answer cells, and calls its functions.

Started by :mod:`autograder.sandbox` inside bubblewrap with a listening socket on
file descriptor 3. It serves two clients in turn: the grader (``exec`` of cells)
and the trusted test kernel (``call``, ``backward``, ``getattr`` of the student's
objects). Everything it sends back is data (:func:`autograder.wire.dump_data`).
Nothing here is trusted: the student's code may rewrite this very module; the
verdicts are computed elsewhere.
"""

from __future__ import annotations

import builtins
import linecache
import os
import selectors
import signal
import socket
import sys
import traceback

import cloudpickle

from autograder import wire
from autograder.wire import (
    Callback,
    GradedRef,
    HandleRef,
    WireClosed,
    dump_data,
    flatten_tensors,
    recv_frame,
    send_frame,
)

OUTPUT_LIMIT = int(os.environ.get("CLIPCOURSE_OUTPUT_LIMIT", "200000"))  #: characters per cell or call
STUDENT_FILE = "<your answer"  #: prefix of the file name of every student cell


class OutputLimitExceeded(BaseException):
    """Raised inside student code that prints more than the output limit (not an Exception: no
    ``except Exception`` swallows it)."""


class CappedStream:
    def __init__(self, state: dict):
        self.parts: list[str] = []
        self.size = 0
        self.state = state

    def write(self, text) -> int:
        text = str(text)
        self.size += len(text)
        if self.size > OUTPUT_LIMIT:
            self.state["limit"] = "output"
            raise OutputLimitExceeded(f"more than {OUTPUT_LIMIT} characters of output")
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self) -> str:
        return "".join(self.parts)


class Worker:
    def __init__(self) -> None:
        self.ns: dict = wire.NAMESPACE
        self.ns.update({"__name__": "__main__", "__builtins__": builtins})
        self.handles: dict[int, object] = wire.HANDLES
        self.graphs: dict[int, tuple[list, list]] = {}
        self.graded: list[str] = []
        self.guarded: set[tuple[str, str]] = set()
        self.cells = 0

    # -- the reference implementations of graded functions are not the student's to call -------
    def guard(self) -> None:
        for modname, module in list(sys.modules.items()):
            if not modname.startswith("clipcourse") or module is None:
                continue
            for name in self.graded:
                original = getattr(module, name, None)
                if (modname, name) in self.guarded or not callable(original) or isinstance(original, type):
                    continue
                setattr(module, name, _guarded(original, f"{modname}.{name}"))
                self.guarded.add((modname, name))

    # -- requests -------------------------------------------------------------------------------
    def handle(self, conn: socket.socket, request: dict) -> dict:
        op = request["op"]
        if op == "ping":
            return {"kind": "pong"}
        if op == "exec":
            if request.get("graded") is not None:
                self.graded = list(request["graded"])
            return self.exec_cell(request["source"], request["name"], request.get("setup", False))
        if op == "names":
            return {"kind": "names", "defined": [n for n in request["names"] if n in self.ns]}
        if op == "call":
            return self.call(conn, request)
        if op == "backward":
            return self.backward(request)
        if op == "getattr":
            return self.run_student(lambda: getattr(self.handles[request["handle"]], request["attr"]))
        if op == "release":
            self.graphs.clear()
            return {"kind": "done"}
        return {"kind": "error", "type": "ValueError", "base": "ValueError", "message": f"unknown op {op}",
                "frames": [], "limit": None}

    def exec_cell(self, source: str, name: str, setup: bool) -> dict:
        self.cells += 1
        filename = "<set-up cell>" if setup else f"{STUDENT_FILE} {name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        state: dict = {"limit": None}
        out, err = CappedStream(state), CappedStream(state)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        error = None
        try:
            self.guard()
            exec(compile(source, filename, "exec"), self.ns)
        except BaseException as exc:  # noqa: BLE001 - everything the cell raised is reported
            error = describe(exc, state)
        finally:
            sys.stdout, sys.stderr = saved
        if not setup:
            self.guard()
        return {"kind": "done", "stdout": out.getvalue(), "stderr": err.getvalue(), "error": error}

    def resolve(self, value, conn):
        if isinstance(value, Callback):
            return self.make_callback(conn, value.id)
        if isinstance(value, GradedRef):
            return self.ns[value.name]
        if isinstance(value, HandleRef):
            return self.handles[value.id]
        if type(value) is list:
            return [self.resolve(v, conn) for v in value]
        if type(value) is tuple:
            return tuple(self.resolve(v, conn) for v in value)
        if type(value) is dict:
            return {k: self.resolve(v, conn) for k, v in value.items()}
        return value

    def make_callback(self, conn: socket.socket, cid: int):
        def callback(*args, **kwargs):
            send_frame(conn, dump_data({"kind": "callback", "id": cid, "args": encode(list(args), self.handles),
                                        "kwargs": encode(kwargs, self.handles)}))
            reply = cloudpickle.loads(recv_frame(conn))
            if reply["kind"] == "raise":
                raise getattr(builtins, reply["type"], RuntimeError)(reply["message"])
            return self.resolve(reply["value"], conn)

        callback.__name__ = callback.__qualname__ = f"callback_{cid}"
        return callback

    def call(self, conn: socket.socket, request: dict) -> dict:
        import torch
        from torch import nn

        target = request["target"]
        func = self.ns.get(target[1]) if target[0] == "graded" else self.handles[target[1]]
        args = self.resolve(request["args"], conn)
        kwargs = self.resolve(request["kwargs"], conn)
        for value, grads in zip(list(args) + list(kwargs.values()), request.get("module_grads", []), strict=False):
            if grads and isinstance(value, nn.Module):  # pickling drops .grad: stale gradients matter
                params = dict(value.named_parameters())
                for name, grad in grads.items():
                    if name in params:
                        params[name].grad = grad
        inputs = flatten_tensors([args, kwargs])
        for tensor, flag in zip(inputs, request.get("requires_grad", []), strict=False):
            if flag and tensor.is_floating_point():
                tensor.requires_grad_(True)
        # A parameter the call replaces by a new object (re-wrapping logit_scale in nn.Parameter) is
        # no longer the one an optimizer holds: the grader mirrors that on its side (remote._copy_back).
        before = [dict(v.named_parameters()) if isinstance(v, nn.Module) else {} for v in list(args) + list(kwargs.values())]
        saved = {name: self.ns.get(name, _MISSING) for name in request.get("overrides", {})}
        for name, value in request.get("overrides", {}).items():
            self.ns[name] = getattr(value, "__wrapped_reference__", value)
        try:
            self.guard()
            reply = self.run_student(lambda: func(*args, **kwargs))
        finally:
            for name, value in saved.items():
                if value is _MISSING:
                    self.ns.pop(name, None)
                else:
                    self.ns[name] = value
        if reply["kind"] != "result":
            return reply
        mutated = []
        for value, old in zip(list(args) + list(kwargs.values()), before, strict=True):
            if isinstance(value, nn.Module):
                replaced = [k for k, p in value.named_parameters() if k in old and old[k] is not p]
                mutated.append(("module", {k: v.detach() for k, v in value.state_dict().items()},
                                {k: p.grad.detach() for k, p in value.named_parameters() if p.grad is not None},
                                replaced))
            elif isinstance(value, torch.optim.Optimizer):
                mutated.append(("optimizer", value.state_dict(), None))
            elif type(value) is torch.Tensor:
                mutated.append(("tensor", value.detach(), None))
            else:
                mutated.append(("other", None, None))
        reply["mutated"] = mutated
        if request.get("grad"):
            outs = flatten_tensors(reply.pop("_raw"))
            wanted = [t for t in inputs if t.requires_grad]
            reply["out_requires_grad"] = [bool(t.requires_grad) for t in outs]
            hid = len(self.graphs) + 1
            self.graphs[hid] = (wanted, outs)
            reply["graph"] = hid
            reply["in_requires_grad"] = [bool(t.requires_grad) for t in inputs]
        reply.pop("_raw", None)
        return reply

    def run_student(self, thunk) -> dict:
        state: dict = {"limit": None}
        out = CappedStream(state)
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out  # what a function prints while graded is not shown (nor kept)
        try:
            value = thunk()
            if state["limit"]:
                raise OutputLimitExceeded("output limit")
            return {"kind": "result", "value": encode(value, self.handles), "_raw": value}
        except BaseException as exc:  # noqa: BLE001
            return describe(exc, state)
        finally:
            sys.stdout, sys.stderr = saved

    def backward(self, request: dict) -> dict:
        import torch

        wanted, outs = self.graphs[request["graph"]]
        pairs = [(o, g) for o, g in zip(outs, request["grads"], strict=True) if g is not None and o.requires_grad]

        def run():
            if not pairs or not wanted:
                return [None] * len(wanted)
            return list(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                            allow_unused=True, retain_graph=True))

        reply = self.run_student(run)
        reply.pop("_raw", None)
        return reply


_MISSING = object()


def _guarded(original, label: str):
    def guarded(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if caller.startswith(STUDENT_FILE):
            raise PermissionError(
                f"{label} is graded in this exercise: write your own (an answer may use your earlier "
                "answers and any library function that this exercise does not grade)")
        return original(*args, **kwargs)

    guarded.__wrapped_reference__ = original
    guarded.__name__ = getattr(original, "__name__", "guarded")
    guarded.__doc__ = getattr(original, "__doc__", None)
    return guarded


def encode(value, handles: dict, depth: int = 0):
    """Data envelope of ``value``: tensors, scalars and containers by value, anything else a handle."""
    import torch

    if depth > 50:
        raise ValueError("result nested too deeply")
    kind = type(value)
    if kind is torch.Tensor:
        return ("t", value.detach().cpu())
    if value is None or kind in (bool, int, float, str):
        return ("v", value)
    if kind is torch.Size:
        return ("T", [("v", int(v)) for v in value])
    if kind in (list, tuple):
        return ("l" if kind is list else "T", [encode(v, handles, depth + 1) for v in value])
    if kind is dict and all(type(k) in (str, int) for k in value):
        return ("d", [[k, encode(v, handles, depth + 1)] for k, v in value.items()])
    hid = len(handles) + 1
    handles[hid] = value
    return ("r", hid, f"{kind.__module__}.{kind.__qualname__}", callable(value))


def limit_of(exc: BaseException, state: dict) -> str | None:
    if state.get("limit"):
        return state["limit"]
    if isinstance(exc, OutputLimitExceeded):
        return "output"
    text = str(exc)
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "not enough memory" in text.lower():
        return "memory"
    if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG
        return "file size"
    if isinstance(exc, BlockingIOError) or (isinstance(exc, OSError) and exc.errno == 11):
        return "processes"
    return None


def describe(exc: BaseException, state: dict) -> dict:
    """The exception as data: its type, nearest built-in base, message, the student's frames only."""
    base = next((c.__name__ for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c), "Exception")
    frames = [
        [f.lineno or 0, f.name, (f.line or "").strip(), f.filename]
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith(STUDENT_FILE)
    ]
    try:
        message = str(exc)[:2000]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        message = "(the error message could not be read)"
    return {"kind": "error", "type": type(exc).__name__[:100], "base": base, "message": message,
            "frames": frames, "limit": limit_of(exc, state)}


def _log(text: str) -> None:
    os.write(2, text.encode(errors="replace")[-4000:])


def serve(listener: socket.socket) -> None:
    worker = Worker()
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
                continue
            try:
                frame = recv_frame(sock)
            except (WireClosed, OSError):
                selector.unregister(sock)
                sock.close()
                continue
            try:
                reply = worker.handle(sock, cloudpickle.loads(frame))
                reply.pop("_raw", None)
                payload = dump_data(reply)
            except BaseException as exc:  # noqa: BLE001 - a reply that cannot be encoded
                _log(traceback.format_exc())
                payload = dump_data(describe(exc, {}))
            try:
                send_frame(sock, payload)
            except OSError:
                selector.unregister(sock)
                sock.close()


def main() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large file is an OSError, not a crash
    sys.stdin = open(os.devnull)
    try:
        import torch  # noqa: F401  (loads while the trusted kernel starts, not during the set-up cell)
    except ImportError:
        pass
    serve(socket.socket(fileno=int(os.environ.get("CLIPCOURSE_WORKER_FD", "3"))))


if __name__ == "__main__":
    main()
