"""clipcourse: the library behind the course *CLIP from scratch*.

Reference implementations live here once; lessons, exercises, tests and
benchmarks import them instead of copying code.
"""

__version__ = "0.1.0"
