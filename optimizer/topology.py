"""Fund topologies: one pooled fund, one per market, or groups of markets (issue 17, item 4).

Venues differ: Binance keeps BTCUSDT and ETHUSDT apart from a fund shared by every other perpetual;
dYdX one fund per isolated market; Bybit moved in December 2025 to pooled funds of up to nine
correlated contracts. A *topology* is a partition of the markets into groups, each with its own
fund. At fixed premium rates (the policy's) group g of scenario s needs

    R[s, g] = max_t ( floor + sum_{u <= t} sum_{j in g} (L_j[s, u] - p_j B_j[s, u]) )

(under the policy's ruin rule: the maximum over that rule's rows, :func:`~.ruin.rows`), and a
vector of fund targets F is sized for one of two ruin events:

* ``"per_fund"``: every fund on its own meets P(R_g > F_g) <= alpha: F_g is the exact-sample
  order statistic of R[:, g] (the floor(alpha N) + 1-th largest). The venue as a whole may then
  see some fund ruined with probability up to G alpha.
* ``"any"``: P(some fund ruined) <= alpha, the venue-wide solvency of one pooled fund. Sizing it
  at least cost is combinatorial (which scenarios to give up, jointly over the funds); this module
  searches a common number m of scenarios given up per fund (the largest m whose union of ruined
  scenarios stays within floor(alpha N)), then lowers funds one order statistic at a time while
  the union allows (greedy). Every answer is recounted in numpy, and reported beside the lower
  bound sum_g F_g("per_fund") (each fund must meet alpha on its own under "any" too).

Every stress scenario (``ScenarioSet.is_stress``) must be survived by every fund.

Pooled never needs more capital than per-market for "any": per scenario the pooled need is a
maximum over t of a sum over groups, at most the sum over groups of each group's maximum, so a
scenario that every per-group fund survives is survived by one fund of their total; the pooled
order statistic is therefore at most the per-group total (tested). :func:`suggest_groups` groups
markets whose needs are tail dependent (the empirical upper tail dependence of R[:, j] at level
``tail``, agglomerated by complete linkage above a threshold that chance would not reach):
the markets that crash together share a fund, as Bybit's pools of correlated contracts do, and the
capital comparison says what isolating the others costs (pooling always needs the least capital;
isolation buys protection of one group's winners from another group's losses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from fundguard.models import ScenarioSet
from fundguard.models.errors import ProblemError, ScenarioError

from .fund import allowed_ruins, kth_largest, worst_net_flow
from .policy import Policy
from .ruin import FLOOR, RuinRule, rows

__all__ = ["TOPOLOGY_RULES", "TopologySizing", "group_needs", "size_topology", "compare_topologies",
           "suggest_groups", "tail_dependence"]

TOPOLOGY_RULES = ("any", "per_fund")


@dataclass(frozen=True, eq=False)
class TopologySizing:
    """Fund targets of one topology (currency units) and what they achieve on the scenarios.

    Attributes
    ----------
    groups : tuple of tuple of str
    funds : (G,) float64, one fund target per group
    total : float, their sum
    rule : {"any", "per_fund"}
    ruin_any : float, in-sample share of random scenarios with some fund ruined
    ruin_per_fund : (G,) float64, each fund's in-sample ruin share
    lower_bound : float, sum of the per-fund order statistics (a lower bound of ``total`` for "any")
    stress_needs : (G,) float64, the largest stress need of each group (0 without stress scenarios)
    """

    groups: tuple[tuple[str, ...], ...]
    funds: np.ndarray
    total: float
    rule: str
    ruin_any: float
    ruin_per_fund: np.ndarray
    lower_bound: float
    stress_needs: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [list(g) for g in self.groups], "funds": [float(f) for f in self.funds],
                "total": self.total, "rule": self.rule, "ruin_any": self.ruin_any,
                "ruin_per_fund": [float(r) for r in self.ruin_per_fund], "lower_bound": self.lower_bound,
                "stress_needs": [float(x) for x in self.stress_needs]}


def _check_groups(groups: Sequence[Sequence[str]], markets: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or not groups:
        raise ProblemError(f"groups must be a non-empty sequence of market lists, got {groups!r}")
    out = []
    for k, group in enumerate(groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Sequence) or not group:
            raise ProblemError(f"groups[{k}] must be a non-empty list of market names, got {group!r}")
        unknown = [m for m in group if m not in markets]
        if unknown:
            raise ProblemError(f"groups[{k}] names unknown market(s) {unknown}; the scenarios have {list(markets)}")
        out.append(tuple(group))
    flat = [m for g in out for m in g]
    repeated = sorted({m for m in flat if flat.count(m) > 1})
    missing = [m for m in markets if m not in flat]
    if repeated or missing:
        raise ProblemError(f"groups must be a partition of the markets: repeated {repeated}, missing {missing}")
    return tuple(out)


def group_needs(scenarios: ScenarioSet, premium_rates: np.ndarray, groups: Sequence[Sequence[str]], *,
                floor: float = 0.0, ruin: RuinRule = FLOOR) -> np.ndarray:
    """(N, G) required fund of each group in each scenario at fixed rates (module notes)."""
    groups = _check_groups(groups, scenarios.markets)
    rates = np.asarray(premium_rates, dtype=np.float64)
    if rates.shape != (scenarios.n_markets,):
        raise ProblemError(f"premium_rates must have one rate per market ({scenarios.n_markets}), got shape {rates.shape}")
    if scenarios.losses_by_market is None and len(groups) > 1:
        raise ScenarioError("sizing funds per group needs each market's losses (ScenarioSet.losses_by_market)")
    out = np.empty((scenarios.n_scenarios, len(groups)))
    for g, group in enumerate(groups):
        index = [scenarios.markets.index(m) for m in group]
        if len(groups) == 1:
            part = scenarios
        else:
            by_market = scenarios.losses_by_market[:, :, index]
            part = ScenarioSet(by_market.sum(axis=2), scenarios.premium_base[:, :, index], group,
                               is_stress=scenarios.is_stress, losses_by_market=by_market)
        laid_out = rows(part, ruin)
        out[:, g] = floor - worst_net_flow(laid_out.losses, laid_out.premium_base, rates[index])
    return out


def size_topology(needs: np.ndarray, alpha: float, rule: str = "any", *, is_stress: np.ndarray | None = None,
                  groups: Sequence[Sequence[str]] | None = None, max_steps: int = 10_000) -> TopologySizing:
    """Fund targets for the group needs ``needs`` (N, G) at ruin level ``alpha`` (module notes)."""
    if rule not in TOPOLOGY_RULES:
        raise ProblemError(f"rule must be one of {TOPOLOGY_RULES}, got {rule!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ProblemError(f"alpha must be in (0, 1), got {alpha!r}")
    needs = np.asarray(needs, dtype=np.float64)
    stress = np.zeros(needs.shape[0], dtype=bool) if is_stress is None else np.asarray(is_stress, dtype=bool)
    random_needs, stress_needs = needs[~stress], needs[stress]
    n, n_groups = random_needs.shape
    if n == 0:
        raise ScenarioError("no random scenario to size the funds on")
    stress_floor = stress_needs.max(axis=0) if stress_needs.size else np.zeros(n_groups)
    stress_floor = np.maximum(stress_floor, 0.0)
    k = allowed_ruins(alpha, n)
    order = np.sort(random_needs, axis=0)[::-1]  # column-wise, largest first

    def at(m: int) -> np.ndarray:  # each fund at its (m + 1)-th largest need, never below 0 or the stress needs
        return np.maximum(np.maximum(order[min(m, n - 1)], 0.0), stress_floor)

    def union(funds: np.ndarray) -> int:
        return int(np.count_nonzero(np.any(random_needs > funds, axis=1)))

    per_fund = at(k)
    lower = float(per_fund.sum())
    if rule == "per_fund":
        funds = per_fund
    else:
        low, high = 0, k  # union(at(0)) == 0 <= k; find the largest common m with union <= k
        while low < high:
            mid = (low + high + 1) // 2
            if union(at(mid)) <= k:
                low = mid
            else:
                high = mid - 1
        funds = at(low)
        funds = _greedy(random_needs, funds, k, stress_floor, max_steps)
    ruined = random_needs > funds
    if rule == "any" and int(np.count_nonzero(ruined.any(axis=1))) > k:  # the numpy recount
        raise ProblemError("topology sizing broke its own constraint; this is a bug, please report it")
    names = tuple(tuple(g) for g in groups) if groups is not None else tuple((f"fund {g}",) for g in range(n_groups))
    return TopologySizing(names, funds, float(funds.sum()), rule, float(ruined.any(axis=1).mean()),
                          ruined.mean(axis=0), lower, stress_floor)


def _greedy(needs: np.ndarray, funds: np.ndarray, k: int, stress_floor: np.ndarray, max_steps: int) -> np.ndarray:
    """Lower one fund at a time to the next need below it while the union of ruined scenarios
    stays within ``k``, the largest saving first."""
    funds = funds.copy()
    ruined = np.any(needs > funds, axis=1)
    for _ in range(max_steps):
        spare = k - int(np.count_nonzero(ruined))
        if spare <= 0:
            break
        best, best_saving, best_hit = -1, 0.0, None
        for g in range(funds.size):
            safe = ~ruined
            below = needs[safe, g][needs[safe, g] < funds[g]]
            target = max(float(below.max()) if below.size else 0.0, float(stress_floor[g]), 0.0)
            if target >= funds[g]:
                continue
            hit = safe & (needs[:, g] > target)
            if int(np.count_nonzero(hit)) > spare:
                continue
            saving = funds[g] - target
            if saving > best_saving:
                best, best_saving, best_hit = g, saving, hit
        if best < 0:
            break
        below = needs[~ruined, best][needs[~ruined, best] < funds[best]]
        funds[best] = max(float(below.max()) if below.size else 0.0, float(stress_floor[best]), 0.0)
        ruined |= best_hit
    return funds


def compare_topologies(policy: Policy, scenarios: ScenarioSet, topologies: Mapping[str, Sequence[Sequence[str]]],
                       alpha: float | None = None, rule: str = "any") -> dict[str, TopologySizing]:
    """Capital each topology needs at ``policy``'s rates (scaled by its participation) for the
    same solvency (``alpha``, default the policy's)."""
    if not isinstance(policy, Policy):
        raise ProblemError(f"policy must be a Policy, got {type(policy).__name__}")
    if tuple(scenarios.markets) != tuple(policy.markets):
        raise ScenarioError(f"scenarios have markets {list(scenarios.markets)}, the policy {list(policy.markets)}")
    if policy.participation is not None:
        scenarios = policy.participation.scaled(scenarios, policy.premium_rates, fund_only=True)
    level = policy.alpha if alpha is None else alpha
    out = {}
    for name, groups in topologies.items():
        needs = group_needs(scenarios, policy.premium_rates, groups, floor=policy.floor, ruin=policy.ruin)
        out[name] = size_topology(needs, level, rule, is_stress=scenarios.is_stress, groups=groups)
    return out


def tail_dependence(needs: np.ndarray, tail: float = 0.05) -> np.ndarray:
    """(J, J) empirical upper tail dependence of the columns of ``needs`` at level ``tail``:
    P(both above their (1 - tail) quantiles) / tail (1 on the diagonal; about ``tail`` for
    independent columns, 1 for comonotone ones)."""
    needs = np.asarray(needs, dtype=np.float64)
    n = needs.shape[0]
    m = max(1, int(math.floor(tail * n)))
    above = np.zeros_like(needs, dtype=bool)
    for j in range(needs.shape[1]):  # the m largest of each column (ties broken by position)
        above[np.argsort(-needs[:, j], kind="stable")[:m], j] = True
    counts = above.T.astype(np.float64) @ above.astype(np.float64)
    return counts / m


def suggest_groups(needs: np.ndarray, markets: Sequence[str], *, tail: float = 0.05,
                   threshold: float | None = None) -> tuple[tuple[str, ...], ...]:
    """Groups of markets whose needs are tail dependent (module notes): complete linkage on
    ``1 - tail_dependence``, cut where every pair in a group has dependence at least ``threshold``.

    The default threshold is the dependence independent markets would show by chance in three
    standard errors, ``tail + 3 sqrt(tail (1 - tail) / m)`` with m the exceedances per market
    (0.07 at tail 5% and 20,000 scenarios): markets are grouped when their needs are large
    together more often than chance says, as Bybit groups correlated contracts."""
    lam = tail_dependence(needs, tail)
    if threshold is None:
        m = max(1, int(math.floor(tail * np.asarray(needs).shape[0])))
        threshold = tail + 3.0 * math.sqrt(tail * (1.0 - tail) / m)
    if len(markets) == 1:
        return ((markets[0],),)
    distance = np.clip(1.0 - 0.5 * (lam + lam.T), 0.0, 1.0)
    np.fill_diagonal(distance, 0.0)
    labels = fcluster(linkage(squareform(distance, checks=False), method="complete"), t=1.0 - threshold,
                      criterion="distance")
    groups: dict[int, list[str]] = {}
    for name, label in zip(markets, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    return tuple(tuple(g) for g in sorted(groups.values(), key=lambda g: markets.index(g[0])))
