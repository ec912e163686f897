"""The grading sandbox and its data-only proxies (autograder/sandbox.py, worker.py, remote.py).

One worker per module (start-up costs seconds): student code is run in it with ``exec``
requests, then called through the same proxies the trusted test kernel uses.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autograder import course, remote, sandbox

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(sandbox.bwrap_problem()), reason="bubblewrap is not usable here")]

STUDENT = '''
import torch, torch.nn.functional as F
def scale(x, k=2.0):
    return x * k
def pair(x):
    return x.sum(), x.argmax()
def lookalike(x):
    class Fake(torch.Tensor):
        pass
    return x.as_subclass(Fake)
def step(model, x, optimizer):
    optimizer.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()
def apply_in_batches(encode, items, size):
    return [encode(items[i:i + size]) for i in range(0, len(items), size)]
class Counter:
    def __init__(self, start):
        self.hits = start
    def add(self, k):
        self.hits += k
        return self.hits
    def __len__(self):
        return self.hits
def slow(x):
    while True:
        pass
def fails(x):
    raise ValueError("x must be positive")
def peek():
    import os
    return sorted(os.listdir("/")), os.path.exists(SOLUTIONS)
'''


@pytest.fixture(scope="module")
def client():
    box = sandbox.Sandbox()
    box.limits["timeout"] = 20
    box.start()
    graded = ["scale", "pair", "lookalike", "step", "apply_in_batches", "Counter", "slow", "fails", "peek", "cosine_similarity_matrix"]
    assert box.execute("import torch\nimport clipcourse.losses", "setup", setup=True, graded=graded)["error"] is None
    reply = box.execute(f"SOLUTIONS = {str(course.SOLUTIONS)!r}\n" + STUDENT, "answers")
    assert reply["error"] is None, reply
    ns: dict = {}
    remote._CLIENT = None
    remote.bind(ns, box.address, graded, graded, 20.0)
    yield ns, box
    box.close()


def test_data_and_autograd_cross_the_boundary(client):
    ns, _ = client
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = ns["scale"](x, k=3.0)
    assert type(out) is torch.Tensor and torch.equal(out.detach(), torch.tensor([3.0, -6.0, 9.0]))
    out.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 3.0))
    total, index = ns["pair"](x)
    assert total.requires_grad and not index.requires_grad and int(index) == 2


def test_modules_and_optimisers_come_back_updated(client):
    ns, _ = client
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    twin = nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(4, 3)
    loss = ns["step"](model, x, torch.optim.SGD(model.parameters(), lr=0.1))
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    want = twin(x).pow(2).mean()
    want.backward()
    opt.step()
    assert math.isclose(loss, want.item(), rel_tol=1e-6)
    assert torch.allclose(model.weight, twin.weight)


def test_callables_stay_trusted_and_objects_stay_remote(client):
    ns, _ = client
    calls = []

    def encode(batch):
        calls.append(len(batch))
        return torch.tensor([float(len(batch))])

    out = ns["apply_in_batches"](encode, list(range(5)), 2)
    assert calls == [2, 2, 1] and [float(t) for t in out] == [2.0, 2.0, 1.0]
    counter = ns["Counter"](3)
    assert isinstance(counter, remote.RemoteObject)
    assert counter.add(4) == 7 and counter.hits == 7 and len(counter) == 7
    fake = ns["lookalike"](torch.ones(2))
    assert type(fake) is not torch.Tensor  # a tensor subclass never arrives as a tensor


def test_errors_limits_and_isolation(client):
    ns, box = client
    with pytest.raises(ValueError, match="positive"):
        ns["fails"](1)
    listing, sees_solutions = ns["peek"]()
    assert not sees_solutions and "solutions" not in listing
    with pytest.raises(remote.SandboxLimitExceeded, match="time limit"):
        ns["slow"](1)


def test_grading_refuses_without_a_sandbox(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(course.SandboxMissing, match="install bubblewrap.*--unsafe-no-sandbox"):
        course.grade(tmp_path, tmp_path / "out", ["ch01"])
