"""The one exception hierarchy of fundguard.

Every error a user can trigger with bad input is a ``FundguardError``; those caused by
bad *values* are also ``ValueError`` so that generic ``except ValueError`` code keeps
working. Messages name the offending field, market, date or index.

``fundguard.optimizer`` raises these too (it imports this module; ``models`` never
imports ``optimizer``).
"""

from __future__ import annotations

__all__ = [
    "FundguardError",
    "DataError",
    "DateParseError",
    "UnsortedTimestampsError",
    "DuplicateTimestampsError",
    "InvalidPriceError",
    "GapError",
    "MixedFrequencyError",
    "InsufficientHistoryError",
    "ModelError",
    "SpecificationError",
    "FitError",
    "ConfigError",
    "ScenarioError",
    "ProblemError",
    "InfeasibleError",
    "SolverError",
    "CertificationError",
    "MissingDependencyError",
    "FundguardWarning",
    "ConvergenceWarning",
    "NonStationaryWarning",
    "HeavyTailWarning",
]


class FundguardError(Exception):
    """Base class of every fundguard error."""


class DataError(FundguardError, ValueError):
    """Price or return data that cannot be used as given."""


class DateParseError(DataError):
    """A date or timestamp cell that cannot be parsed."""


class UnsortedTimestampsError(DataError):
    """Timestamps that are not in increasing order."""


class DuplicateTimestampsError(DataError):
    """The same timestamp appears twice for one market."""


class InvalidPriceError(DataError):
    """A price that is missing, non-finite, zero or negative."""


class GapError(DataError):
    """A hole in the time index larger than the stated tolerance."""


class MixedFrequencyError(DataError):
    """Rows at more than one sampling frequency (for example daily and hourly)."""


class InsufficientHistoryError(DataError):
    """Too few observations for the requested fit."""


class ModelError(FundguardError):
    """A model that cannot be specified or fitted as asked."""


class SpecificationError(ModelError, ValueError):
    """An unknown or inconsistent model specification or parameter."""


class FitError(ModelError, RuntimeError):
    """A model fit whose result would be meaningless (non-finite parameters or likelihood)."""


class ConfigError(FundguardError, ValueError):
    """A configuration file or mapping with a missing, unknown or invalid key (named, with its line)."""


class ScenarioError(FundguardError, ValueError):
    """A ScenarioSet or ReturnPaths with bad shapes or values."""


class ProblemError(FundguardError, ValueError):
    """A PolicyProblem with invalid parameters."""


class InfeasibleError(FundguardError):
    """No policy meets the constraints; the message says which constraint binds and by how much."""


class SolverError(FundguardError, RuntimeError):
    """Every installed solver failed on a problem that should be solvable."""


class CertificationError(FundguardError):
    """No candidate policy could be certified at the requested ruin level and confidence."""


class MissingDependencyError(FundguardError, ImportError):
    """An optional dependency a feature needs is not installed; the message names the extra."""


class FundguardWarning(UserWarning):
    """Base class of every fundguard warning."""


class ConvergenceWarning(FundguardWarning):
    """An optimiser (likelihood or policy) reported non-convergence; treat the result with care."""


class NonStationaryWarning(FundguardWarning):
    """A fitted volatility model with persistence >= 1: no finite long-run variance."""


class HeavyTailWarning(FundguardWarning):
    """A fitted tail index >= 0.5: the tail has infinite variance; extreme draws dominate."""
