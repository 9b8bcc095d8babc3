"""Moved to :mod:`fundguard.optimizer.job.preset`; this path re-exports it for one release."""

from .job.preset import *  # noqa: F403
from .job.preset import __all__  # noqa: F401
