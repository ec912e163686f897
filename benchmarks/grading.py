"""Grading throughput: seconds per notebook, and for a class of 40 Chapter 1 submissions.

    python benchmarks/grading.py                 # 40 students, one grading job per core
    python benchmarks/grading.py --students 8 --jobs 2

Every submission is graded as in ``make grade``: its answers in a bubblewrap sandbox, its
tests in a trusted kernel (issue #8). The class mixes correct answers, stubs and catalogued
mistakes. ``per_notebook_s`` is one submission graded alone (start-up included);
``class_s`` the whole class with ``jobs`` parallel graders. Target: class_s <= 240 on 2 cores.
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder import course, sample_class  # noqa: E402

TARGET_CLASS_S = 240.0


def make_class(n: int, dest: Path) -> None:
    name, base = sample_class.released("ch01")
    answers = sample_class.solution_answers("ch01")
    pool = [sample_class.with_answers(base, answers), base] + [s.notebook for s in sample_class.mistake_students("ch01")]
    students = [sample_class.Student(f"s{k:03d}", None, pool[k % len(pool)]) for k in range(n)]
    sample_class.write_class(students, "ch01", dest)


def timed_grade(n: int, jobs: int | None, tmp: Path) -> float:
    make_class(n, tmp / f"class{n}")
    start = time.perf_counter()
    csv_path = course.grade(tmp / f"class{n}", tmp / f"graded{n}", ["ch01"], jobs=jobs)
    seconds = time.perf_counter() - start
    rows = csv_path.read_text().splitlines()[1:]
    if len(rows) != n:
        raise SystemExit(f"expected {n} rows, got {len(rows)}")
    return seconds


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=None, help="default: one per core")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    jobs = args.jobs or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        one = timed_grade(1, 1, Path(tmp))
        print(f"one notebook, graded alone: {one:.1f} s")
        whole = timed_grade(args.students, jobs, Path(tmp))
        print(f"{args.students} Chapter 1 notebooks with {jobs} jobs: {whole:.1f} s "
              f"({whole / args.students:.1f} s per notebook; target <= {TARGET_CLASS_S:.0f} s for 40 on 2 cores)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {
        "per_notebook_s": round(one, 2),
        "class_s": round(whole, 2),
        "class_per_notebook_s": round(whole / args.students, 2),
        "students": args.students,
        "jobs": jobs,
        "cores": os.cpu_count(),
        "load_average_1min": load,
        "meets_target": bool(args.students == 40 and whole <= TARGET_CLASS_S),
        "machine": platform.machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
