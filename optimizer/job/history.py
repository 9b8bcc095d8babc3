"""An append-only history of recalibrations in one SQLite file (stdlib ``sqlite3``).

Each ``fundguard calibrate --history FILE`` adds one row: when it ran, the config digest, the fund
target and rates, the certificate and the data range the models were fitted on. Rows are never
updated or deleted: the table carries triggers that refuse both, so a job cannot rewrite what a
risk committee was shown. ``fundguard history FILE`` prints or exports it.

The file is the user's: it is created when missing, otherwise only appended to; a file that is
not a fundguard history is refused (``HistoryError``), never altered.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fundguard.models.errors import FundguardError

__all__ = ["HISTORY_COLUMNS", "HistoryError", "check_history", "data_range", "record_run", "read_history"]

#: Column -> SQLite type, in table order (money in currency units, probabilities as fractions).
HISTORY_COLUMNS: dict[str, str] = {
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "recorded_at": "TEXT NOT NULL",     # ISO 8601 UTC, when the row was written
    "started": "TEXT NOT NULL",         # ISO 8601 UTC, when the run started
    "config_digest": "TEXT NOT NULL",
    "config_source": "TEXT",            # the config file, NULL for the built-in preset
    "seed": "INTEGER NOT NULL",
    "method": "TEXT NOT NULL",
    "alpha": "REAL NOT NULL",
    "confidence": "REAL NOT NULL",
    "horizon": "INTEGER NOT NULL",      # days
    "currency": "TEXT",
    "fund_target": "REAL NOT NULL",
    "objective": "REAL NOT NULL",
    "rates": "TEXT NOT NULL",           # JSON {market: rate}
    "certificate_n": "INTEGER NOT NULL",
    "certificate_ruins": "INTEGER NOT NULL",
    "certificate_upper_bound": "REAL NOT NULL",
    "meets_target": "INTEGER NOT NULL",  # 0 / 1
    "data_first": "TEXT",               # earliest return any market's model was fitted on
    "data_last": "TEXT",                # latest one
    "data_range": "TEXT NOT NULL",      # JSON {market: [first, last]} (or "preset")
    "versions": "TEXT NOT NULL",        # JSON {package: version}
    "out": "TEXT",                      # the run's output folder, when it wrote one
}

_TABLE = "fundguard_runs"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} ("
    + ", ".join(f"{name} {kind}" for name, kind in HISTORY_COLUMNS.items()) + ")",
    f"CREATE TRIGGER IF NOT EXISTS {_TABLE}_no_update BEFORE UPDATE ON {_TABLE} "
    "BEGIN SELECT RAISE(ABORT, 'the fundguard history is append-only'); END",
    f"CREATE TRIGGER IF NOT EXISTS {_TABLE}_no_delete BEFORE DELETE ON {_TABLE} "
    "BEGIN SELECT RAISE(ABORT, 'the fundguard history is append-only'); END",
)


class HistoryError(FundguardError, ValueError):
    """The history file cannot be used: not a SQLite file, another program's database, unreadable."""


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    if not create and not path.exists():
        raise HistoryError(f"history file {str(path)!r} does not exist")
    if path.exists() and path.is_dir():
        raise HistoryError(f"history file {str(path)!r} is a folder")
    try:
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # explicit transactions below
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"history file {str(path)!r} is not a SQLite database ({exc})") from None
    others = tables - {_TABLE, "sqlite_sequence"}
    if others and _TABLE not in tables:
        con.close()
        raise HistoryError(f"history file {str(path)!r} is another program's database (tables {sorted(others)}); "
                           "give a new file or one fundguard wrote")
    if _TABLE in tables:
        columns = [row[1] for row in con.execute(f"PRAGMA table_info({_TABLE})")]
        if columns != list(HISTORY_COLUMNS):
            con.close()
            raise HistoryError(f"history file {str(path)!r} has columns {columns}, not those of this fundguard "
                               "version: give a new file")
    return con


def check_history(path: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a history file that could not take a run: a folder, a file that
    is not SQLite or is another program's database, a missing parent folder."""
    path = Path(path)
    if not path.parent.is_dir():
        raise HistoryError(f"history file {str(path)!r}: the folder {str(path.parent)!r} does not exist")
    if path.exists():
        _connect(path, create=False).close()


def data_range(models: Mapping[str, Any]) -> dict[str, Any]:
    """Each market's ``[first, last]`` return date from a result's ``models`` section (price files
    or a preset's provenance), or its source where no dates are recorded."""
    out: dict[str, Any] = {}
    for name, info in models.items():
        source = info.get("provenance") or info
        first, last = source.get("first_return") or source.get("first"), source.get("last_return") or source.get("last")
        out[name] = [first, last] if first or last else info.get("source")
    return out


def record_run(path: str | os.PathLike[str], result: Any, *, out: str | os.PathLike[str] | None = None) -> int:
    """Append ``result`` (a :class:`~fundguard.optimizer.CalibrationResult`) to the history in
    ``path`` (created when missing); returns the new row's id."""
    import datetime

    path = Path(path)
    document = result.to_dict()
    inputs, policy, certificate = document["inputs"], document["policy"], document["certificate"]
    ranges = data_range(document["models"])
    dates = [d for r in ranges.values() if isinstance(r, list) for d in r if d]
    row = {
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "started": document["run"].get("started") or "",
        "config_digest": inputs["config_digest"],
        "config_source": inputs.get("config_source"),
        "seed": int(inputs["seed"]),
        "method": policy["method"],
        "alpha": float(policy["alpha"]),
        "confidence": float(certificate["confidence"]),
        "horizon": int(inputs["horizon"]),
        "currency": inputs.get("currency"),
        "fund_target": float(policy["fund_target"]),
        "objective": float(policy["objective"]),
        "rates": json.dumps(policy["premium_rates"]),
        "certificate_n": int(certificate["n"]),
        "certificate_ruins": int(certificate["ruins"]),
        "certificate_upper_bound": float(certificate["upper_bound"]),
        "meets_target": int(bool(document["meets_target"])),
        "data_first": min(dates) if dates else None,
        "data_last": max(dates) if dates else None,
        "data_range": json.dumps(ranges),
        "versions": json.dumps(inputs.get("versions") or {}),
        "out": None if out is None else str(Path(out).resolve()),
    }
    con = _connect(path, create=True)
    try:
        con.execute("BEGIN IMMEDIATE")  # one writer at a time; others wait up to the timeout
        for statement in _SCHEMA:  # (not executescript: it would commit the open transaction)
            con.execute(statement)
        names = ", ".join(row)
        cursor = con.execute(f"INSERT INTO {_TABLE} ({names}) VALUES ({', '.join('?' for _ in row)})",
                             tuple(row.values()))
        con.execute("COMMIT")
        return int(cursor.lastrowid)
    except sqlite3.Error as exc:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise HistoryError(f"cannot append to the history file {str(path)!r}: {exc}") from None
    finally:
        con.close()


def read_history(path: str | os.PathLike[str], last: int | None = None) -> Any:
    """The history in ``path`` as a pandas DataFrame indexed by ``id`` (oldest first), ``rates``,
    ``data_range`` and ``versions`` decoded from JSON; only the ``last`` rows when given."""
    import pandas as pd

    con = _connect(Path(path), create=False)
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if _TABLE not in tables:
            frame = pd.DataFrame(columns=list(HISTORY_COLUMNS))
        else:
            query = f"SELECT * FROM {_TABLE} ORDER BY id"
            if last is not None:
                query = f"SELECT * FROM (SELECT * FROM {_TABLE} ORDER BY id DESC LIMIT {int(last)}) ORDER BY id"
            cursor = con.execute(query)
            frame = pd.DataFrame(cursor.fetchall(), columns=[c[0] for c in cursor.description])
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history file {str(path)!r}: {exc}") from None
    finally:
        con.close()
    for column in ("rates", "data_range", "versions"):
        frame[column] = [json.loads(v) for v in frame[column]]
    frame["meets_target"] = frame["meets_target"].astype(bool)
    return frame.set_index("id")
