"""Selection rules: small pure functions from result rows (of validation jobs) to chosen settings.

A ``select`` step names the step it reads (``from``), the setting it picks (``choose``), the rule and
its numbers, ``where`` (only rows with these values) and ``by`` (one choice per value of these keys,
e.g. per backbone). Each choice is a dict of the ``by`` values and the chosen setting, which the steps
that ``use`` the selection receive as settings of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pcsr_lightning.io.runs import JobResult

TOLERANCE = 1e-9  # a loss equal to the budget up to float rounding (30.0 - 29.95) is within it


class NothingChosen(ValueError):
    """No row satisfies the rule (named with the group and the rows it saw)."""


def largest_within(rows: Sequence[dict], choose: str, metric: str = "psnr", budget: float = 0.05,
                   baseline: Mapping | None = None) -> object:
    """The largest value of ``choose`` whose ``metric`` stays within ``budget`` of the baseline row's (the
    row where ``choose`` is null, or the one matching ``baseline``): the gate's threshold rule."""
    base = [r for r in rows if _matches(r, baseline)] if baseline else [r for r in rows if r.get(choose) is None]
    if len(base) != 1:
        raise NothingChosen(f"largest_within needs one baseline row ({baseline or {choose: None}}), found {len(base)}")
    ref = base[0][metric]
    ok = [r[choose] for r in rows
          if r.get(choose) is not None and r is not base[0] and ref - r[metric] <= budget + TOLERANCE]
    if not ok:
        raise NothingChosen(f"no {choose} keeps {metric} within {budget} of the baseline's {ref:.4f}")
    return max(ok)


def best(rows: Sequence[dict], choose: str | Sequence[str], metric: str = "psnr", goal: str = "max") -> object:
    """The value of ``choose`` on the row with the highest (``goal: max``) or lowest ``metric``; for a list
    of settings (a grid's point, e.g. ``[skip_hardest, p_power]``) the tuple of their values."""
    if goal not in ("max", "min"):
        raise ValueError(f"select.goal must be max or min, got {goal!r}")
    scored = [r for r in rows if r.get(metric) is not None]
    if not scored:
        raise NothingChosen(f"no row has {metric}")
    pick = max if goal == "max" else min
    row = pick(scored, key=lambda r: r[metric])
    return row[choose] if isinstance(choose, str) else tuple(row.get(c) for c in choose)


class PerItem(list):
    """Several choices from one group, each a dict naming the item it is for (``leave_one_out``)."""


def leave_one_out(rows: Sequence[dict], choose: str, metric: str = "psnr", budget: float = 0.05,
                  over: str = "image") -> PerItem:
    """For each value of ``over`` (each photo of a per-image sweep), ``largest_within`` on the mean over the
    OTHER photos' rows: where photos are too few to set some aside, each is reported at a value that the
    others chose, so no photo's number comes from a choice it took part in. The ``mean`` rows are ignored."""
    rows = [r for r in rows if r.get(over) not in (None, "mean")]
    items = sorted({r[over] for r in rows})
    if len(items) < 2:
        raise NothingChosen(f"leave_one_out needs rows of two or more {over}s, found {items}")
    chosen = PerItem()
    for item in items:
        groups: dict[object, list[float]] = {}
        for r in rows:
            if r[over] != item:
                groups.setdefault(r.get(choose), []).append(r[metric])
        counts = {len(v) for v in groups.values()}
        if counts != {len(items) - 1}:
            raise NothingChosen(f"leave_one_out needs one row per {over} and {choose} value (narrow the rows with "
                                f"where); without {item} the {choose} values have {sorted(counts)} rows each")
        means = [{choose: value, metric: sum(v) / len(v)} for value, v in groups.items()]
        try:
            chosen.append({over: item, choose: largest_within(means, choose, metric, budget)})
        except NothingChosen as err:
            raise NothingChosen(f"without {over} {item}: {err}") from None
    return chosen


RULES: dict[str, Callable[..., object]] = {"largest_within": largest_within, "best": best,
                                           "leave_one_out": leave_one_out}


def _matches(row: Mapping, where: Mapping | None) -> bool:
    return all(row.get(k) == v for k, v in (where or {}).items())


def result_rows(results: Sequence[JobResult]) -> list[dict]:
    """Each result row with its job's settings beside it (what a selection reads)."""
    return [{**r.point, **row} for r in results for row in r.rows]


def choose(select: Mapping, results: Sequence[JobResult]) -> list[dict]:
    """The choices of one ``select`` node over the ``from`` step's results, one per ``by`` group."""
    options = {k: v for k, v in select.items() if k not in ("from", "choose", "rule", "where", "by")}
    rule_name = select.get("rule", "largest_within")
    if rule_name not in RULES:
        raise ValueError(f"select.rule {rule_name!r} is not a rule (the rules: {', '.join(RULES)})")
    rule = RULES[rule_name]
    if not isinstance(select["choose"], str) and rule is not best:
        raise ValueError(f"select.choose lists several settings, which only the rule best chooses together "
                         f"(rule {rule_name} chooses one)")
    rows = [r for r in result_rows(results) if _matches(r, select.get("where"))]
    by = list(select.get("by") or [])
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in by), []).append(row)
    if not groups:
        raise NothingChosen(f"select from {select['from']}: no rows match {select.get('where')}")
    chosen = []
    for key, group in groups.items():
        try:
            value = rule(group, select["choose"], **options)
        except NothingChosen as err:
            label = ", ".join(f"{k}={v}" for k, v in zip(by, key, strict=True)) or "all rows"
            raise NothingChosen(f"select from {select['from']} ({label}): {err}") from None
        group_values = dict(zip(by, key, strict=True))
        if isinstance(value, PerItem):
            chosen += [{**group_values, **item} for item in value]
        else:
            picked = ({select["choose"]: value} if isinstance(select["choose"], str) else
                      dict(zip(select["choose"], value, strict=True)))
            chosen.append({**group_values, **picked})
    return chosen
