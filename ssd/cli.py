"""Console-script entry points (``[project.scripts]``) that ``python -m`` modules lack.

``ssd`` itself is ``ssd.run:main`` (Hydra's decorated main); these two give ``ssd-report`` and
``ssd-bench`` what a console script needs: read ``sys.argv``, return an exit code.
"""

from __future__ import annotations

import sys


def report() -> int:
    """``ssd-report FOLDER...`` = ``python -m ssd.report FOLDER...``."""
    from ssd.report.cli import main

    return main(sys.argv[1:])


def bench() -> int:
    """``ssd-bench [options]`` = ``python -m ssd.bench [options]``."""
    from ssd.bench import main

    main(sys.argv[1:])
    return 0
