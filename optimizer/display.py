"""How figures read to people: money in k / m / bn, probabilities in percent.

One place for the formats the reports, the plots, the reprs and the ``summary()`` methods share,
so that a fund target reads the same everywhere ("33.0m USD", never "3.3e7").
"""

from __future__ import annotations

import math

__all__ = ["money", "percent", "shorten"]

_UNITS = (("tn", 1e12), ("bn", 1e9), ("m", 1e6), ("k", 1e3))


def money(value: float, currency: str | None = None, digits: int = 3, *, trim: bool = False) -> str:
    """``value`` (currency units) with ``digits`` significant digits and a k / m / bn / tn suffix;
    ``trim`` drops trailing zeros (axis ticks: "5m" beside "2.5m", not "5.00m").

    >>> money(33_012_345.0, "USD")
    '33.0m USD'
    >>> money(-850.0)
    '-850'
    """
    value = float(value)
    if not math.isfinite(value):
        text = "n/a" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    else:
        unit, size = "", 1.0
        for name, step in reversed(_UNITS):  # k, m, bn, tn: the largest the value reaches
            if abs(value) >= step or abs(float(f"{value / size:.{digits}g}")) >= 1000:
                unit, size = name, step
        scaled = value / size
        if scaled == 0 or not unit:
            text = f"{scaled:.{digits}g}"
        else:  # fixed decimals: 33.0m, 1.20bn (the significant digits shown, trailing zeros kept)
            decimals = max(digits - 1 - int(math.floor(math.log10(abs(float(f"{scaled:.{digits}g}"))))), 0)
            number = f"{scaled:.{decimals}f}"
            if trim and "." in number:
                number = number.rstrip("0").rstrip(".")
            text = f"{number}{unit}"
    return f"{text} {currency}" if currency else text


def percent(value: float, digits: int = 2) -> str:
    """A probability or fraction as a percentage with ``digits`` significant digits past the
    leading ones that matter: 0.01 -> "1%", 0.001 -> "0.1%", 0.0125 -> "1.25%".

    >>> percent(0.01), percent(0.001), percent(0.0125)
    ('1%', '0.1%', '1.25%')
    """
    value = float(value)
    if not math.isfinite(value):
        return "n/a"
    text = f"{100 * value:.{digits + 1}g}"
    if "e" in text:
        text = f"{100 * value:.{digits + 4}f}".rstrip("0").rstrip(".")
    return f"{text}%"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
