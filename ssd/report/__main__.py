"""``python -m ssd.report``: see ``ssd.report.cli``."""

import sys

from ssd.report.cli import main

sys.exit(main())
