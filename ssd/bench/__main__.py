"""``python -m ssd.bench``."""

import sys

from ssd.bench.cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
