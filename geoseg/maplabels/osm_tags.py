"""Reading tag values: GDAL's OSM ``other_tags`` string and the widths and lane counts of lines."""

import math
import re

# GDAL's OSM driver puts the tags it has no column for into one hstore string:
# "width"=>"10","name"=>"Main \"Street\"" (quotes and backslashes escaped with a backslash).
_HSTORE_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
# A width in metres as OpenStreetMap writes it: "10", "10.5", "10 m", "10m".
_METRES = re.compile(r"\s*(\d+(?:\.\d+)?)\s*m?\s*")


def parse_other_tags(text: str | None) -> dict[str, str]:
    """``'"width"=>"10","lanes"=>"2"'`` -> ``{"width": "10", "lanes": "2"}``; None -> {}."""
    if not text:
        return {}
    return {
        _ESCAPE.sub(r"\1", key): _ESCAPE.sub(r"\1", value)
        for key, value in _HSTORE_PAIR.findall(text)
    }


def parse_metres(text: str) -> float | None:
    """A width tag in metres ("10", "10 m", "10.5"), or None where it is not one (feet, text,
    zero)."""
    match = _METRES.fullmatch(text)
    value = float(match[1]) if match else 0.0
    return value if 0 < value < math.inf else None


def parse_lanes(text: str) -> int | None:
    """A lanes tag as a positive whole number ("2"), or None where it is not one ("2;3", "")."""
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None
