"""clipcourse: the library behind the course *CLIP from scratch*.

Reference implementations live here once; lessons, exercises, tests and
benchmarks import them instead of copying code. ``src/clipcourse/README.md``
lists every module in one line, in the order the chapters use them.
"""

__version__ = "0.1.0"
