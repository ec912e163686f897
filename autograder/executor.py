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

    def _restart_and_replay(self, upto: int) -> None:
        self._cleanup_kernel()
        self.km = self.create_kernel_manager()
        self.start_new_kernel()
        self.start_new_kernel_client()
        for j, earlier in enumerate(self.nb.cells[:upto]):
            if earlier.cell_type == "code":
                # A copy: replayed outputs must not overwrite what was graded the first time.
                self.execute_cell(copy.deepcopy(earlier), j, store_history=False)
