"""Moved to :mod:`fundguard.optimizer.job.config`; this path re-exports it for one release."""

from .job.config import *  # noqa: F403
from .job.config import __all__  # noqa: F401
