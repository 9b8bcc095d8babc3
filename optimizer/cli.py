"""Moved to :mod:`fundguard.optimizer.job.cli`; this path (and ``python -m fundguard.optimizer.cli``)
keeps working for one release."""

import sys

from .job.cli import *  # noqa: F403
from .job.cli import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
