"""Moved to :mod:`fundguard.optimizer.job.outputs`; this path re-exports it for one release."""

from .job.outputs import *  # noqa: F403
from .job.outputs import __all__  # noqa: F401
