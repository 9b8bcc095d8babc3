"""Moved to :mod:`fundguard.optimizer.job.report`; this path re-exports it for one release."""

from .job.report import *  # noqa: F403
from .job.report import __all__  # noqa: F401
