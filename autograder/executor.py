"""An nbgrader Execute preprocessor that survives a submission killing its kernel.

nbgrader's own Execute gives up on the whole notebook when the kernel dies
(``os._exit(1)`` in an answer, a segfault, running out of memory), and the
autograde step then *removes the submission*: the student silently gets no
grade. Here the cell that killed the kernel gets an error output explaining
what happened, a fresh kernel re-runs the cells above it (outputs discarded),
and grading continues with the next cell.
"""

from __future__ import annotations

import copy

from nbclient.exceptions import DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

KERNEL_DIED = (
    "This cell ended the Python process (os._exit, a crash, or running out of memory). "
    "The grader restarted Python and re-ran the cells above so the rest of the notebook "
    "could still be graded."
)


class ResilientExecute(Execute):
    """Execute, but a dead kernel fails one cell instead of the whole submission."""

    def preprocess_cell(self, cell, resources, index):
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self.log.warning("Kernel died in cell %d; restarting and replaying the cells above", index)
            cell.outputs.append(
                NotebookNode(
                    output_type="error",
                    ename="KernelDied",
                    evalue=KERNEL_DIED,
                    traceback=[f"KernelDied: {KERNEL_DIED}"],
                )
            )
            self._restart_and_replay(index)
            return cell, self.resources

    def _replays(self, cell) -> bool:
        return cell.cell_type == "code"

    def _restart_and_replay(self, upto: int) -> None:
        self._cleanup_kernel()
        self.km = self.create_kernel_manager()
        self.start_new_kernel()
        self.start_new_kernel_client()
        for j, earlier in enumerate(self.nb.cells[:upto]):
            if self._replays(earlier):
                # A copy: replayed outputs must not overwrite what was graded the first time.
                self.execute_cell(copy.deepcopy(earlier), j, store_history=False)


# ---------------------------------------------------------------------------------------------
# Two processes per submission: the student's code in a sandbox, the tests in a trusted kernel.

import json  # noqa: E402
import os  # noqa: E402

from autograder.sandbox import Sandbox  # noqa: E402

LIMIT_FEEDBACK = {
    "time": "time limit: this cell ran for more than {t:.0f} s and was stopped (CLIPCOURSE_CELL_TIMEOUT)",
    "ended": "this cell ended the Python process that runs your code (os._exit, a crash, or a limit); "
             "the grader restarted it and re-ran the cells above",
}


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _sanitize_outputs(cell) -> None:
    """No grader path in the feedback (a library warning names its file, for one)."""
    from autograder.remote import sanitize

    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            output["text"] = sanitize(output.get("text", ""))
        elif output.get("output_type") == "error":
            output["evalue"] = sanitize(output.get("evalue", ""))
            output["traceback"] = [sanitize(line) for line in output.get("traceback", [])]


class SandboxedExecute(ResilientExecute):
    """Answer cells run in a sandboxed worker (autograder/sandbox.py); the set-up cell runs in both;
    test cells run in the trusted kernel, where each graded name is a proxy to the student's function
    (autograder/remote.py). No student code ever runs in the kernel that computes the verdicts."""

    def preprocess(self, nb, resources=None, km=None):
        self._graded = [
            _meta(c)["grade_id"] for c in nb.cells
            if c.cell_type == "code" and _meta(c).get("solution") and not _meta(c).get("grade")
        ]
        self._ran: list[tuple[str, str, bool]] = []  # (source, name, setup) of the cells run in the sandbox
        self._sandbox = Sandbox(unsafe=os.environ.get("CLIPCOURSE_UNSAFE_NO_SANDBOX") == "1")
        self._sandbox.start()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self._sandbox.close()

    def _sandbox_run(self, source: str, name: str, setup: bool) -> dict:
        if self._ran and not self._sandbox.alive():  # ended during a test cell's call
            self._restart_sandbox(len(self._ran))
        reply = self._sandbox.execute(source, name, setup=setup, graded=self._graded)
        self._ran.append((source, name, setup))
        if reply.get("kind") == "limit":  # this cell's fault: restart without it
            self._restart_sandbox(len(self._ran) - 1)
        return reply

    def _restart_sandbox(self, upto: int) -> None:
        self._sandbox.stop()
        self._sandbox.start()
        for source, name, setup in self._ran[:upto]:
            self._sandbox.execute(source, name, setup=setup, graded=self._graded)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        meta = _meta(cell)
        if meta.get("grade") or (meta.get("locked") and not meta.get("solution")):
            if not meta.get("grade"):  # the set-up cell and other locked instructor cells: both sides
                self._sandbox_run(cell.source, meta.get("grade_id", f"cell {index}"), True)
            else:
                self._bind(index)
            cell, resources = super().preprocess_cell(cell, resources, index)
            _sanitize_outputs(cell)
            return cell, resources
        reply = self._sandbox_run(cell.source, meta.get("grade_id", f"cell {index}"), False)
        self._student_outputs(cell, reply)
        return cell, resources

    def _get_timeout(self, cell):
        # The set-up cell (instructor code: imports) gets the sandbox's set-up allowance too: on a
        # busy machine two processes import torch and transformers at once, and a slow import
        # must not cost the student every point.
        timeout = super()._get_timeout(cell)
        if timeout and cell is not None and _meta(cell).get("locked") and not _meta(cell).get("grade") \
                and not _meta(cell).get("solution"):
            timeout += 120
        return timeout

    def _bind(self, index: int) -> None:
        if not self._sandbox.alive():
            self._restart_sandbox(len(self._ran))
        try:
            defined = self._sandbox.request({"op": "names", "names": self._graded}, timeout=10)["defined"]
        except Exception:  # noqa: BLE001 - a worker that no longer answers defines nothing
            defined = []
        code = (
            "import autograder.remote as __r\n"
            f"__r.bind(globals(), {self._sandbox.address!r}, {json.dumps(defined)}, {json.dumps(self._graded)}, "
            f"{self._sandbox.limits['timeout']!r})\n"
            "del __r\n"
        )
        self.execute_cell(NotebookNode(cell_type="code", source=code, metadata={}, outputs=[]), index,
                          store_history=False)

    def _student_outputs(self, cell, reply: dict) -> None:
        cell.outputs = []
        if reply.get("kind") == "limit":
            text = LIMIT_FEEDBACK[reply["limit"]].format(t=reply.get("seconds", 0))
            cell.outputs.append(NotebookNode(output_type="error", ename="LimitExceeded", evalue=text,
                                             traceback=[f"LimitExceeded: {text}"]))
            return
        for stream in ("stdout", "stderr"):
            if reply.get(stream):
                cell.outputs.append(NotebookNode(output_type="stream", name=stream, text=reply[stream]))
        error = reply.get("error")
        if error:
            from autograder.remote import LIMIT_TEXT

            evalue = LIMIT_TEXT[error["limit"]].format(t=self._sandbox.limits["timeout"]) if error.get("limit") else error["message"]
            lines = [f"  line {f[0]}, in {f[1]}: {f[2]}" for f in error.get("frames", [])]
            cell.outputs.append(NotebookNode(output_type="error", ename=error["type"], evalue=evalue,
                                             traceback=["Traceback (your code only):", *lines, f"{error['type']}: {evalue}"]))

    def _replays(self, cell) -> bool:
        # the trusted kernel only ever ran locked cells: replay those that set up state
        meta = _meta(cell)
        return cell.cell_type == "code" and meta.get("locked") and not meta.get("grade") and not meta.get("solution")
