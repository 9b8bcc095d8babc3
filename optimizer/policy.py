"""Results: the :class:`Policy` a method returns and the :class:`Certificate` that qualifies it.

Results are separate types from the specification (:class:`~fundguard.optimizer.PolicyProblem`),
as in arch's model / result split. Both are frozen; arrays are stored read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .display import money, percent, shorten
from .ruin import FLOOR, RuinRule

__all__ = ["Policy", "Certificate", "Frontier"]


@dataclass(frozen=True)
class Certificate:
    """Out-of-sample ruin count of one policy and its exact one-sided upper confidence bound.

    Attributes
    ----------
    n : int
        Random scenarios evaluated (stress scenarios are never counted).
    ruins : int
        How many of them end in ruin (``min_t F[s, t] < floor``).
    ruin_rate : float
        ``ruins / n``.
    upper_bound : float
        Clopper–Pearson one-sided upper bound on P(ruin) at ``confidence``:
        ``beta.ppf(confidence, ruins + 1, n - ruins)``, and 1.0 when ``ruins == n``.
    confidence : float
        The confidence level of ``upper_bound``: if the scenarios are i.i.d. draws independent
        of the policy, ``P(P(ruin) <= upper_bound) >= confidence``.
    """

    n: int
    ruins: int
    ruin_rate: float
    upper_bound: float
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-serialisable view."""
        return {
            "n": self.n,
            "ruins": self.ruins,
            "ruin_rate": self.ruin_rate,
            "upper_bound": self.upper_bound,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, eq=False)
class Policy:
    """A fund target and premium rates, with what is known about them.

    Attributes
    ----------
    fund_target : float, currency units
        ``F0``.
    premium_rates : (J,) float64, read-only
        ``p``, fractions of the premium base, in the market order of ``markets``.
    objective : float, currency units
        Capital cost recomputed in numpy from ``(F0, p)`` (never the solver's claim).
    method : str
        The method that chose the policy ("cvar", "exact", "scenario", "certified").
    status : str
        "optimal" (the solver's optimum, confirmed by the numpy check), "feasible" (meets the
        method's promise, optimality not proven: time limit or inaccurate solvers) or
        "certified" (method "certified": the certificate's bound is at most alpha).
    in_sample_ruin : float
        Share of the random scenarios the policy was fitted on that end in ruin.
    solve_seconds : float
        Wall-clock time of the method, seconds.
    solver : str
        Which solver's answer was used: "CLARABEL", "HIGHS", "SCS" (cvxpy programs),
        "HIGHS (milp)" ("exact"), "cutting planes (CLARABEL)" / "cutting planes (HIGHS)" (the
        fast "cvar" engine and its master-program solver) or "closed form" (no solver needed:
        every rate fixed).
    markets : tuple of str
        Market names, the order of ``premium_rates``.
    floor : float, currency units
        The ruin floor the policy was fitted for (needed to evaluate it elsewhere).
    alpha : float
        The problem's ruin-probability target.
    n_scenarios : int
        Random scenarios ``in_sample_ruin`` was computed on.
    epsilon, beta : float or None
        Method "scenario": the a-priori guarantee ``P^N( P(ruin) > epsilon ) <= beta``
        (Campi & Garatti 2008, 2011); None for other methods.
    discarded : int or None
        Method "scenario": scenarios discarded (and violated by the policy).
    certificate : Certificate or None
        Method "certified": the certificate on the scenarios held out for it.
    details : mapping
        Method-specific diagnostics (solver attempts, screening sizes, levels tried, ...).
    participation : Participation or None
        The problem's participation (:mod:`.participation`) when the book answers the fees: the
        policy is then evaluated on the scenarios scaled by its shares at its rates (every ruin
        count and certificate does so).
    ruin : RuinRule
        The problem's ruin rule (:mod:`.ruin`); every ruin count of the policy applies it.
    """

    fund_target: float
    premium_rates: np.ndarray
    objective: float
    method: str
    status: str
    in_sample_ruin: float
    solve_seconds: float
    solver: str
    markets: tuple[str, ...]
    floor: float
    alpha: float
    n_scenarios: int
    epsilon: float | None = None
    beta: float | None = None
    discarded: int | None = None
    certificate: Certificate | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    participation: Any = None
    ruin: RuinRule = FLOOR

    def __post_init__(self) -> None:
        rates = np.array(self.premium_rates, dtype=np.float64)
        rates.setflags(write=False)
        object.__setattr__(self, "premium_rates", rates)
        object.__setattr__(self, "markets", tuple(self.markets))

    def rates_by_market(self) -> dict[str, float]:
        """``{market: premium rate}``."""
        return {name: float(rate) for name, rate in zip(self.markets, self.premium_rates, strict=True)}

    @property
    def rates(self) -> pd.Series:
        """The premium rates as a Series indexed by market (fractions of the premium base); a copy."""
        return pd.Series(np.array(self.premium_rates), index=pd.Index(self.markets, name="market"),
                         name="premium_rate")

    def __repr__(self) -> str:
        rates = ", ".join(f"{m}: {percent(r, 3)}" for m, r in zip(self.markets, self.premium_rates))
        return (f"Policy(method={self.method!r}, status={self.status!r}, fund_target={money(self.fund_target)}, "
                f"alpha={percent(self.alpha)}, rates={{{shorten(rates, 120)}}}, "
                f"in_sample_ruin={percent(self.in_sample_ruin, 3)} of {self.n_scenarios:,})")

    def summary(self, currency: str | None = None) -> str:
        """The policy in a few lines: fund target, rates per market, what the method promises,
        the certificate (when it has one). ``currency`` labels the money (e.g. "USD")."""
        width = max((len(m) for m in self.markets), default=6)
        lines = [f"fund target      {money(self.fund_target, currency)} ({self.fund_target:,.0f})",
                 f"total cost       {money(self.objective, currency)} (the objective: cost of capital x fund + expected losses paid - fee income + lost trading revenue)",
                 f"alpha            {percent(self.alpha)} (P(ruin over the horizon))",
                 f"method           {self.method} ({self.status}; solver {self.solver})",
                 f"in-sample ruin   {percent(self.in_sample_ruin, 3)} of {self.n_scenarios:,} scenarios",
                 "premium rates"]
        lines += [f"  {m:<{width}}  {percent(r, 3)}" for m, r in zip(self.markets, self.premium_rates)]
        if self.details.get("guarantee"):
            lines.append(f"promise          {self.details['guarantee']}")
        if self.certificate is not None:
            c = self.certificate
            lines.append(f"certificate      {c.ruins:,} ruins in {c.n:,}: P(ruin) <= {percent(c.upper_bound, 3)} "
                         f"at {percent(c.confidence)} confidence")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable view (the certificate as a nested dict, details dropped)."""
        return {
            "method": self.method,
            "status": self.status,
            "fund_target": self.fund_target,
            "premium_rates": self.rates_by_market(),
            "objective": self.objective,
            "in_sample_ruin": self.in_sample_ruin,
            "n_scenarios": self.n_scenarios,
            "alpha": self.alpha,
            "floor": self.floor,
            "ruin": self.ruin.to_dict(),
            "solver": self.solver,
            "solve_seconds": self.solve_seconds,
            "epsilon": self.epsilon,
            "beta": self.beta,
            "discarded": self.discarded,
            "certificate": None if self.certificate is None else self.certificate.to_dict(),
            "participation": None if self.participation is None else {
                **self.participation.to_dict(),
                "shares": dict(zip(self.markets, map(float, self.participation.shares(self.premium_rates)))),
            },
        }


class Frontier(list):
    """The cost of solvency: a list of :class:`Policy`, one per ruin level, in the order asked,
    with :meth:`to_frame` for the table view (what :func:`~fundguard.optimizer.frontier` returns)."""

    def to_frame(self) -> pd.DataFrame:
        """One row per level, indexed by ``alpha``: fund target and total cost (the objective; currency units),
        method, status, in-sample ruin, then one ``rate <market>`` column per market (fractions)."""
        rows = []
        for p in self:
            row: dict[str, Any] = {"alpha": p.alpha, "fund_target": p.fund_target, "objective": p.objective,
                                   "method": p.method, "status": p.status, "in_sample_ruin": p.in_sample_ruin}
            row.update({f"rate {m}": float(r) for m, r in zip(p.markets, p.premium_rates)})
            rows.append(row)
        columns = ["alpha", "fund_target", "objective", "method", "status", "in_sample_ruin"]
        return pd.DataFrame(rows, columns=columns + [c for c in (rows[0] if rows else {}) if c not in columns]
                            ).set_index("alpha")

    def __repr__(self) -> str:
        levels = ", ".join(f"{percent(p.alpha)}: {money(p.fund_target)}" for p in self)
        return f"Frontier({len(self)} levels, fund target by alpha {{{shorten(levels, 200)}}})"
