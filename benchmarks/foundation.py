"""Figures for the course foundation (issue #2), on this machine.

    python benchmarks/foundation.py

Prints a few lines and, last, one JSON object with
``shapes_images_per_s`` (Shapes-world rendering on one thread, 32×32),
``ch01_lesson_s`` (wall time to execute the Chapter 1 lesson) and
``autograde_s_per_notebook`` (grading a three-student class of Chapter 1).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import course, sample_class  # noqa: E402
from clipcourse.data.shapes import images_per_second  # noqa: E402
from clipcourse.device import torch_threads  # noqa: E402


def shapes_speed() -> float:
    with torch_threads(1):
        images_per_second(n=1000)  # warm-up
        return max(images_per_second(n=5000) for _ in range(3))


def lesson_seconds(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def autograde_seconds_per_notebook(assignment: str = "ch01") -> tuple[float, int]:
    students = [*sample_class.baseline_students(assignment), sample_class.mistake_students(assignment)[0]]
    with tempfile.TemporaryDirectory() as tmp:
        sample_class.write_class(students, assignment, Path(tmp) / "class")
        start = time.perf_counter()
        course.grade(Path(tmp) / "class", Path(tmp) / "out", [assignment])
        return (time.perf_counter() - start) / len(students), len(students)


def main() -> None:
    figures = {"torch_threads": torch.get_num_threads()}
    figures["shapes_images_per_s"] = round(shapes_speed())
    print(f"Shapes world: {figures['shapes_images_per_s']:,} images/s (32×32, one thread)")
    figures["ch01_lesson_s"] = round(lesson_seconds(REPO / "book/ch01_contrastive/lesson.ipynb"), 1)
    print(f"Chapter 1 lesson: {figures['ch01_lesson_s']} s")
    per_nb, n = autograde_seconds_per_notebook()
    figures["autograde_s_per_notebook"] = round(per_nb, 1)
    print(f"autograde + feedback: {per_nb:.1f} s per notebook ({n} notebooks, including set-up)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
