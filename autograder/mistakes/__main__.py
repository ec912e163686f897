"""``python -m autograder.mistakes sync|check chNN``: see :mod:`autograder.mistakes.sync`."""

from autograder.mistakes.sync import main

raise SystemExit(main())
