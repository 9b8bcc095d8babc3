"""Old module path of the numpy check, kept for one release: it lives in :mod:`.fund.rule`
(import it from :mod:`fundguard.optimizer.fund`)."""

from .fund.rule import *  # noqa: F403 - the old path re-exports the module's public names
from .fund.rule import __all__  # noqa: F401
