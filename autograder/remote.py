"""The trusted side of a graded call: proxies for the student's functions in the test kernel.

Before each test cell the grader runs :func:`bind` in the trusted kernel (which never
runs student code). Every graded name the student defined becomes a proxy that calls
the student's function in the sandbox with data only:

* tensors, numbers, strings, ``None``, bools, lists/tuples/dicts of them: by value;
* ``nn.Module`` and ``torch.optim`` optimisers: shipped (cloudpickle, classes a test
  defines included), called, and their state dicts copied back after the call;
* callables (``encode`` in ``encode_in_batches(encode, items, batch_size)``): stay
  here; the sandbox calls back, so a test's counters and closures see every call;
* anything the student returns that is not data (an instance of a graded class, a
  lookalike of a tensor) comes back as a :class:`RemoteObject` whose attributes and
  methods are forwarded, never as the object itself;
* autograd crosses the boundary: when inputs require grad, the result is the output
  of a ``torch.autograd.Function`` whose backward asks the sandbox for the gradients.

Results are loaded with ``torch.load(weights_only=True)`` (:mod:`autograder.wire`).
"""

from __future__ import annotations

import builtins
import linecache
import os
import socket
import sys
import tempfile
import traceback

import cloudpickle
import torch
from torch import nn

from autograder import wire
from autograder.wire import (
    Callback,
    GradedRef,
    HandleRef,
    WireClosed,
    flatten_tensors,
    load_data,
    recv_frame,
    send_frame,
)

_CLIENT = None
_MISSING = object()


class SandboxLimitExceeded(BaseException):
    """The student's code hit a limit (time, memory, processes, output, file size) or ended its
    process. A BaseException, so no ``except Exception`` in a test swallows it: the cell fails."""


LIMIT_TEXT = {
    "time": "time limit: your code ran for more than {t:.0f} s (CLIPCOURSE_CELL_TIMEOUT)",
    "memory": "memory limit: your code needed more memory than the grader allows (CLIPCOURSE_MEMORY_LIMIT)",
    "output": "output limit: your code printed too much (CLIPCOURSE_OUTPUT_LIMIT)",
    "file size": "file size limit: your code wrote a file larger than allowed (CLIPCOURSE_FILE_LIMIT)",
    "processes": "process limit: your code started too many processes or threads (CLIPCOURSE_PROCESS_LIMIT)",
    "ended": "your code ended the Python process that runs it (os._exit, a crash, or a limit)",
}


class Client:
    def __init__(self, address: str, timeout: float):
        self.address, self.timeout = address, timeout
        self.sock: socket.socket | None = None
        self.broken = ""
        self.ns: dict = {}
        self.proxies: dict[str, GradedFunction] = {}

    def _connect(self) -> socket.socket:
        if self.broken:
            _raise_at(SandboxLimitExceeded(self.broken), [])
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(self.address)
        return self.sock

    def _fail(self, key: str) -> SandboxLimitExceeded:
        self.broken = LIMIT_TEXT[key].format(t=self.timeout)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        return SandboxLimitExceeded(self.broken)

    def exchange(self, message: dict, callbacks: dict | None = None) -> dict:
        sock = self._connect()
        sock.settimeout(self.timeout)
        try:
            send_frame(sock, cloudpickle.dumps(message))
            while True:
                reply = load_data(recv_frame(sock))
                if type(reply) is not dict or reply.get("kind") != "callback":
                    return reply
                send_frame(sock, cloudpickle.dumps(self._run_callback(reply, callbacks or {})))
        except TimeoutError:
            _raise_at(self._fail("time"), [])
        except (WireClosed, OSError):
            _raise_at(self._fail("ended"), [])

    def _run_callback(self, reply: dict, callbacks: dict) -> dict:
        try:
            args, kwargs = decode(reply["args"], self), decode(reply["kwargs"], self)
            value = callbacks[reply["id"]](*args, **kwargs)
            return {"kind": "return", "value": self.mark(value, {})[0]}
        except Exception as exc:  # noqa: BLE001 - the test's callable raised; the student's code sees it
            base = next((c.__name__ for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c), "RuntimeError")
            return {"kind": "raise", "type": base, "message": str(exc)}

    def mark(self, value, callbacks: dict):
        """``(value ready to ship, stateful)``: callables become callbacks, proxies references."""
        stateful = False

        def walk(v, top):
            nonlocal stateful
            if type(v) is torch.Tensor:
                return v.detach()
            if isinstance(v, GradedFunction):
                return GradedRef(v.name)
            if isinstance(v, RemoteObject):
                return HandleRef(object.__getattribute__(v, "_id"))
            if isinstance(v, (nn.Module, torch.optim.Optimizer)):
                stateful = stateful or top
                return v
            if type(v) in (list, tuple):
                return type(v)(walk(x, False) for x in v)
            if type(v) is dict:
                return {k: walk(x, False) for k, x in v.items()}
            if callable(v) and not isinstance(v, type):
                callbacks[id(v)] = v
                return Callback(id(v))
            return v

        if type(value) in (list, tuple):
            return type(value)(walk(v, True) for v in value), stateful
        if type(value) is dict:
            return {k: walk(v, True) for k, v in value.items()}, stateful
        return walk(value, False), stateful

    def call(self, target: tuple, args: tuple, kwargs: dict):
        callbacks: dict = {}
        shipped_args, stateful_a = self.mark(list(args), callbacks)
        shipped_kwargs, stateful_k = self.mark(dict(kwargs), callbacks)
        inputs = flatten_tensors([list(args), dict(kwargs)])
        flags = [bool(t.requires_grad) for t in inputs]
        grad = torch.is_grad_enabled() and any(flags) and not (stateful_a or stateful_k)
        overrides = {}
        for name, proxy in self.proxies.items():
            current = self.ns.get(name, _MISSING)
            if current is not _MISSING and current is not proxy and not isinstance(current, GradedFunction):
                overrides[name] = current  # a test swapped in the reference (e.g. clip_loss in train_step)
        module_grads = [
            {n: p.grad.detach() for n, p in a.named_parameters() if p.grad is not None} if isinstance(a, nn.Module) else None
            for a in list(args) + list(kwargs.values())
        ]
        reply = self.exchange({"op": "call", "target": target, "args": shipped_args, "kwargs": shipped_kwargs,
                               "requires_grad": flags, "grad": grad, "overrides": overrides,
                               "module_grads": module_grads}, callbacks)
        if type(reply) is not dict or reply.get("kind") != "result":
            raise_remote(reply, self)
        value = decode(reply["value"], self)
        _copy_back(reply.get("mutated", []), list(args) + list(kwargs.values()))
        if grad and any(reply.get("out_requires_grad", [])):
            outs = flatten_tensors(value)
            spec = _Spec(self, reply["graph"], outs, reply["out_requires_grad"], reply["in_requires_grad"])
            new = _RemoteFunction.apply(spec, *inputs)
            value = _substitute(value, iter(new))
        return value


def _replace_parameter(module: nn.Module, name: str) -> None:
    """Mirror a parameter the student's code replaced by a new object: optimizers lose track of it here too."""
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    old = getattr(owner, leaf)
    setattr(owner, leaf, nn.Parameter(old.detach().clone(), requires_grad=old.requires_grad))


def _copy_back(mutated: list, originals: list) -> None:
    for entry, original in zip(mutated, originals, strict=False):
        if type(entry) not in (list, tuple) or len(entry) not in (3, 4):
            continue
        kind, payload, grads = entry[:3]
        try:
            if kind == "module" and isinstance(original, nn.Module) and type(payload) is dict:
                if all(type(v) is torch.Tensor for v in payload.values()):
                    original.load_state_dict(payload)
                replaced = entry[3] if len(entry) == 4 and type(entry[3]) is list else []
                for name in (n for n in replaced if type(n) is str):
                    _replace_parameter(original, name)
                grads = grads if type(grads) is dict else {}
                for name, param in original.named_parameters():
                    g = grads.get(name)
                    param.grad = g if type(g) is torch.Tensor and g.shape == param.shape else None
            elif kind == "optimizer" and isinstance(original, torch.optim.Optimizer) and type(payload) is dict:
                original.load_state_dict(payload)
            elif kind == "tensor" and type(original) is torch.Tensor and type(payload) is torch.Tensor:
                if payload.shape == original.shape and payload.dtype == original.dtype and not torch.equal(payload, original.detach().cpu()):
                    with torch.no_grad():
                        original.copy_(payload)
        except Exception:  # noqa: BLE001 - a state the student broke stays broken here too, as in one process
            pass


class _Spec:
    def __init__(self, client, graph, outs, out_rg, in_rg):
        self.client, self.graph, self.outs, self.out_rg, self.in_rg = client, graph, outs, out_rg, in_rg


class _RemoteFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, *inputs):
        ctx.spec = spec
        outs = tuple(t.clone() for t in spec.outs)
        ctx.mark_non_differentiable(*[o for o, rg in zip(outs, spec.out_rg, strict=True) if not rg])
        return outs

    @staticmethod
    def backward(ctx, *grads):
        spec = ctx.spec
        reply = spec.client.exchange({"op": "backward", "graph": spec.graph,
                                      "grads": [g.detach() if (rg and g is not None) else None
                                                for g, rg in zip(grads, spec.out_rg, strict=True)]})
        if type(reply) is not dict or reply.get("kind") != "result":
            raise_remote(reply, spec.client)
        got = iter(decode(reply["value"], spec.client) or [])
        result = [None]
        for flag in spec.in_rg:
            g = next(got, None) if flag else None
            result.append(g if type(g) is torch.Tensor else None)
        return tuple(result)


def _substitute(value, new):
    if type(value) is torch.Tensor:
        return next(new)
    if type(value) in (list, tuple):
        return type(value)(_substitute(v, new) for v in value)
    if type(value) is dict:
        return {k: _substitute(v, new) for k, v in value.items()}
    return value


def decode(env, client: Client):
    """Rebuild a result from its data envelope (:func:`autograder.worker.encode`); refuse anything else."""
    if type(env) not in (list, tuple) or not env:
        raise SandboxLimitExceeded("the sandbox sent something that is not data")
    tag = env[0]
    if tag == "t" and type(env[1]) is torch.Tensor:
        return env[1]
    if tag == "v" and (env[1] is None or type(env[1]) in (bool, int, float, str)):
        return env[1]
    if tag == "l":
        return [decode(v, client) for v in env[1]]
    if tag == "T":
        return tuple(decode(v, client) for v in env[1])
    if tag == "d":
        return {k: decode(v, client) for k, v in env[1] if type(k) in (str, int)}
    if tag == "r" and type(env[1]) is int:
        return RemoteObject(client, env[1], str(env[2]), bool(env[3]))
    raise SandboxLimitExceeded("the sandbox sent something that is not data")


class RemoteObject:
    """An object that lives in the sandbox: attribute reads and calls are forwarded."""

    def __init__(self, client, hid, typename, is_callable):
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_id", hid)
        object.__setattr__(self, "_typename", typename)

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            # never forwarded implicitly: torch, numpy and pickle probe dunders such as
            # __torch_function__ or __array__ and would call into the student's code
            raise AttributeError(attr)
        return self._remote(attr)

    def _remote(self, attr):
        client = object.__getattribute__(self, "_client")
        reply = client.exchange({"op": "getattr", "handle": object.__getattribute__(self, "_id"), "attr": attr})
        if type(reply) is not dict or reply.get("kind") != "result":
            raise_remote(reply, client)
        return decode(reply["value"], client)

    def __call__(self, *args, **kwargs):
        client = object.__getattribute__(self, "_client")
        return client.call(("handle", object.__getattribute__(self, "_id")), args, kwargs)

    def __repr__(self):
        return f"<{object.__getattribute__(self, '_typename')} object of your code>"

    def __reduce__(self):  # nested in an argument: the worker unpickles it to the real object
        return (wire._handle, (object.__getattribute__(self, "_id"),))

    def __len__(self):
        return self._remote("__len__")()

    def __getitem__(self, key):
        return self._remote("__getitem__")(key)

    def __setitem__(self, key, value):
        return self._remote("__setitem__")(key, value)

    def __contains__(self, key):
        return self._remote("__contains__")(key)

    def __iter__(self):
        return iter(list_of(self))

    def __bool__(self):
        try:
            return bool(self._remote("__bool__")())
        except AttributeError:
            try:
                return len(self) > 0
            except AttributeError:
                return True


def list_of(obj):
    out, it = [], obj._remote("__iter__")()
    while True:
        try:
            out.append(it._remote("__next__")())
        except StopIteration:
            return out


class GradedFunction:
    """Stands for the student's ``name`` in the trusted kernel."""

    def __init__(self, client: Client, name: str):
        self.client, self.name = client, name
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self.client.call(("graded", self.name), args, kwargs)

    def __repr__(self):
        return f"<your {self.name}>"

    def __reduce__(self):
        return (wire._graded, (self.name,))


def raise_remote(reply, client: Client):
    if type(reply) is not dict or reply.get("kind") != "error":
        raise SandboxLimitExceeded("the sandbox sent something that is not data")
    frames = [f for f in reply.get("frames", []) if type(f) in (list, tuple) and len(f) == 4]
    if reply.get("limit"):
        _raise_at(SandboxLimitExceeded(LIMIT_TEXT.get(reply["limit"], str(reply["limit"])).format(t=client.timeout)), frames)
    name, base, message = str(reply.get("type")), str(reply.get("base")), str(reply.get("message"))
    cls = getattr(builtins, base, RuntimeError)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError  # SystemExit, KeyboardInterrupt: the student's code asked to stop
        message = f"{name}: {message}"
    elif name != base:
        message = f"{name}: {message}"
    try:
        exc = cls(message)
    except Exception:  # noqa: BLE001 - built-ins with other signatures
        exc = RuntimeError(f"{name}: {message}")
    _raise_at(exc, frames)


def _raise_at(exc: BaseException, frames: list) -> None:
    """Raise ``exc`` "at" the student's last line, so a check's hint names that line, not the grader's."""
    exc._student_frames = frames
    exc.__suppress_context__ = True
    lineno, filename = (frames[-1][0], frames[-1][3]) if frames else (1, "<your code>")
    code = compile("\n" * (max(int(lineno), 1) - 1) + "raise __exc", str(filename), "exec")
    exec(code, {"__exc": exc})


# -- in the trusted kernel -----------------------------------------------------------------------
def bind(ns: dict, address: str, defined: list[str], graded: list[str], timeout: float) -> None:
    """Point every graded name the student defined at a proxy; remove the others."""
    global _CLIENT
    if _CLIENT is None or _CLIENT.address != address:
        _CLIENT = Client(address, timeout)
        _install_traceback_filter()
    _CLIENT.ns = ns
    _CLIENT.broken = ""  # a fresh worker (the grader restarts one after a limit)
    if _CLIENT.sock is not None:
        _CLIENT.sock.close()
        _CLIENT.sock = None
    for name in graded:
        proxy = _CLIENT.proxies.setdefault(name, GradedFunction(_CLIENT, name))
        if name in defined:
            ns[name] = proxy
        elif isinstance(ns.get(name), GradedFunction):
            del ns[name]


_PRIVATE = [p for p in {str(__import__("pathlib").Path(__file__).resolve().parent.parent), sys.prefix,
                         sys.base_prefix, tempfile.gettempdir(), os.path.expanduser("~")} if len(p) > 1]


def sanitize(text: str) -> str:
    for path in sorted(_PRIVATE, key=len, reverse=True):
        text = text.replace(path, "…")
    return text


def _is_cell(filename: str) -> bool:
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def _install_traceback_filter() -> None:
    try:
        shell = get_ipython()  # noqa: F821
    except NameError:
        return

    def show(self, etype, value, tb, tb_offset=None):
        lines, hidden_shown = ["Traceback (the test cell and your code only):"], False
        for frame in traceback.extract_tb(tb):
            if not _is_cell(frame.filename):
                continue
            source = linecache.getlines(frame.filename)
            hidden = next((i + 1 for i, line in enumerate(source) if "### BEGIN HIDDEN TESTS" in line), None)
            if hidden is not None and frame.lineno >= hidden:
                if not hidden_shown:
                    lines.append("  in a hidden test")
                    hidden_shown = True
            else:
                lines.append(f"  test cell, line {frame.lineno}: {(frame.line or '').strip()}")
        for lineno, name, line, filename in getattr(value, "_student_frames", []):
            lines.append(f"  your code ({str(filename).strip('<>')}), line {lineno}, in {name}: {line}")
        lines.append(f"{etype.__name__}: {sanitize(str(value))}")
        self._showtraceback(etype, value, lines)

    shell.set_custom_exc((BaseException,), show)
