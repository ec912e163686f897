"""nbgrader configuration for the course (used by `python -m autograder.course`).

The course root is the repository root: source = solutions/, release = notebooks/.
The grade command points CLIPCOURSE_COURSE_ROOT at a scratch copy so grading
never writes into the repository.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # so `autograder.executor` imports from any working directory

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

root = Path(os.environ.get("CLIPCOURSE_COURSE_ROOT", HERE.parent)).resolve()
c.CourseDirectory.root = str(root)
c.CourseDirectory.course_id = "clip-from-scratch"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# What the release leaves in place of solutions.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Every cell is interrupted after this many seconds (an infinite loop costs one cell, not the class).
c.Execute.timeout = int(os.environ.get("CLIPCOURSE_CELL_TIMEOUT", "60"))
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False

# A learner who deletes a graded cell gets it back (and its tests run).
c.OverwriteCells.add_missing_cells = True

# Warnings on stderr must not zero a passing test cell.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?i)warn"

# Keep grading when a submission kills its kernel (os._exit, a segfault): the cell that killed it
# fails, the kernel restarts, and the remaining cells are graded (autograder/executor.py).
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    CheckCellMetadata,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)
from nbgrader.preprocessors.latesubmissions import AssignLatePenalties  # noqa: E402

from autograder.executor import SandboxedExecute  # noqa: E402

c.Autograde.autograde_preprocessors = [
    SandboxedExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.SandboxedExecute.timeout = c.Execute.timeout
c.SandboxedExecute.interrupt_on_timeout = True
c.SandboxedExecute.raise_on_iopub_timeout = False

# Feedback shows each test cell's outputs (the hints) but not the hidden tests' code.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
