"""The tools experiment files are checked with: :class:`ExperimentError` (one line naming the
file, the line and the key), the line index of a TOML text, the field checks of
:class:`Validator`, and ``{start, stop, step}`` ranges. What each table may hold is in
:mod:`insilico.experiments.schema`."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from recordings.format import error_line

#: the most values a {start, stop, step} range may expand to
MAX_RANGE = 100_000


class ExperimentError(ValueError):
    """A bad experiment file: the message names the key and, when known, its line."""


@contextmanager
def located(where: str) -> Iterator[None]:
    """Re-raise a bad value met while building or running a table as one line that names
    the experiment file, the table's line and name (``file.toml:12: stimuli.test: ...``)."""
    try:
        yield
    except ExperimentError as err:
        if str(err).startswith(where.split(":")[0]):  # already names the file
            raise
        raise ExperimentError(f"{where}: {err}") from None
    except (ValueError, TypeError) as err:
        message = error_line(err)
        raise ExperimentError(f"{where}: {message}") from None


class KeyLines:
    """Line numbers of keys in a TOML text: ``(table path, index, key) -> line``."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, int, str], int] = {}
        self.tables: dict[tuple[str, int], int] = {}
        table, counts = "", {}
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            m = re.match(r"^\[\[\s*([A-Za-z0-9_.]+)\s*\]\]$", line)
            if m:
                table = m.group(1)
                counts[table] = counts.get(table, -1) + 1
                self.tables[(table, counts[table])] = n
                continue
            m = re.match(r"^\[\s*([A-Za-z0-9_.]+)\s*\]$", line)
            if m:
                table = m.group(1)
                counts[table] = 0
                self.tables[(table, 0)] = n
                continue
            m = re.match(r'^"?([A-Za-z0-9_.\-]+)"?\s*=', line)
            if m:
                self.lines[(table, counts.get(table, 0), m.group(1))] = n

    def of(self, table: str, index: int, key: str | None = None) -> int | None:
        if key is not None and (table, index, key) in self.lines:
            return self.lines[(table, index, key)]
        return self.tables.get((table, index))


def undefined(what: str, name: Any, defined: set[str] | None = None, above: bool = False) -> str:
    """``refers to stimuli 'x', which is not defined (defined: a, b)``."""
    text = f"refers to {what} {name!r}, which is not defined{' above it' if above else ''}"
    if defined is not None:
        text += f" (defined: {', '.join(sorted(defined)) or 'none'})"
    return text


class Validator:
    """Checks of one experiment's data; every failure raises one located ExperimentError."""

    def __init__(self, data: dict, lines: KeyLines, source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source

    def fail(self, message: str, table: str = "", index: int = 0, key: str | None = None):
        line = self.lines.of(table, index, key)
        where = f"{self.source}:{line}" if line else self.source
        path = ".".join(p for p in (table, key) if p)
        raise ExperimentError(f"{where}: {path + ': ' if path else ''}{message}")

    def keys(self, table: str, index: int, item: dict, allowed: set[str], required=()):
        for key in item:
            if key not in allowed:
                self.fail(
                    f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}", table, index, key
                )
        for key in required:
            if key not in item:
                self.fail(f"missing required key {key!r}", table, index)

    def typed(self, table: str, index: int, item: dict, key: str, types, what: str):
        if key not in item:
            return
        value = item[key]
        allowed = types if isinstance(types, tuple) else (types,)
        bad_bool = isinstance(value, bool) and bool not in allowed
        if bad_bool or not isinstance(value, types):
            self.fail(f"must be {what}, got {value!r}", table, index, key)

    def degrees(self, table: str, index: int, item: dict, key: str):
        """A size or position in degrees: numbers only, no pixel units, positive sizes."""
        if key not in item:
            return
        value = item[key]
        if isinstance(value, list) and value and isinstance(value[0], list):
            value = [v for pair in value for v in pair]  # a list of (x, y) positions
        if isinstance(value, str):
            self.fail(
                f"must be a number of degrees, got {value!r} (pixels are not accepted: "
                "sizes and positions are in degrees of visual angle)",
                table,
                index,
                key,
            )
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                self.fail(f"must be numbers of degrees, got {value!r}", table, index, key)
        if key.startswith("size") and any(v <= 0 for v in values):
            self.fail(f"must be positive, got {value!r}", table, index, key)

    def named_items(self, key: str) -> list[dict]:
        """The array of tables ``[[key]]``, each with a unique string ``name``."""
        items = self.data.get(key, [])
        if not isinstance(items, list):
            self.fail(f"must be an array of tables [[{key}]]", "", 0, key)
        seen = set()
        for i, item in enumerate(items):
            if "name" not in item:
                self.fail("missing required key 'name'", key, i)
            self.typed(key, i, item, "name", str, "a string")
            if item["name"] in seen:
                self.fail(f"duplicate name {item['name']!r}", key, i, "name")
            seen.add(item["name"])
        return items


def expand_range(value: Any) -> Any:
    """``{start, stop, step}`` tables become lists, ``{x = range, y = range}`` a grid of
    (x, y) positions (y outer); everything else is unchanged."""
    if isinstance(value, dict) and set(value) == {"x", "y"}:
        xs, ys = expand_range(value["x"]), expand_range(value["y"])
        return [[x, y] for y in ys for x in xs]
    if isinstance(value, dict) and set(value) == {"start", "stop", "step"}:
        start, stop, step = value["start"], value["stop"], value["step"]
        for name, v in (("start", start), ("stop", stop), ("step", step)):
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"range {name} must be a finite number, got {v!r}")
        if step <= 0:
            raise ValueError(f"range step must be > 0, got {step!r}")
        n = math.ceil((stop - start) / step - 1e-9)
        if n > MAX_RANGE:
            raise ValueError(f"range {value!r} has {n} values; at most {MAX_RANGE}")
        return [start + k * step for k in range(max(n, 0))]
    return value
