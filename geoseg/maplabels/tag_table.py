"""The tag-to-class table: a Python config module (``config/map_tags.py`` is the documented
default) read once and checked, so that a wrong class, tier or width is an error naming it before
any map data is read."""

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from geoseg.classes import CLASSES
from geoseg.config import config_names, is_definition
from geoseg.errors import ConfigError

TABLE_NAMES = ("attribution", "tiers", "rules", "lane_width", "line_widths")
ANY_VALUE = "*"
NO = "no"  # building=no is not a building: "*" never matches it


@dataclass(frozen=True)
class Rule:
    """Features whose tag ``key`` has one of ``values`` (None: any value but "no") are ``class_id``,
    burnt in tier ``tier`` (0 = the highest, burnt last)."""

    tier: int
    key: str
    values: frozenset[str] | None
    class_id: int

    def matches(self, value: str | None) -> bool:
        if value is None or value == "":
            return False
        return value != NO if self.values is None else value in self.values


@dataclass(frozen=True)
class TagTable:
    """The checked table. ``rules`` in priority order: by tier, highest first, then as written."""

    path: Path
    attribution: str
    tiers: tuple[str, ...]
    rules: tuple[Rule, ...]
    lane_width: float
    line_widths: dict[tuple[str, str], float]  # (key, value or "*") -> metres

    @property
    def keys(self) -> frozenset[str]:
        """The tag keys the rules read."""
        return frozenset(rule.key for rule in self.rules)

    def rule_for(self, tags: dict[str, str]) -> Rule | None:
        """The rule a feature with ``tags`` follows: the first that matches, or None."""
        for rule in self.rules:
            if rule.matches(tags.get(rule.key)):
                return rule
        return None

    def default_width(self, key: str, value: str) -> float | None:
        """The default width in metres of a line tagged ``key=value``, or None."""
        width = self.line_widths.get((key, value))
        return self.line_widths.get((key, ANY_VALUE)) if width is None else width


def load_tag_table(path: str | os.PathLike, classes: tuple[str, ...] = CLASSES) -> TagTable:
    """Execute and check the table module at ``path``; class names are those of ``classes``."""
    path = Path(path)
    names = config_names(path)
    settings = {name: value for name, value in names.items() if not is_definition(value)}
    for name in settings:
        if name not in TABLE_NAMES:
            close = difflib.get_close_matches(name, TABLE_NAMES, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"expected {', '.join(TABLE_NAMES)}"
            raise ConfigError(f"{path}: unknown name {name!r}; {hint}")
    missing = [name for name in TABLE_NAMES if name not in settings]
    if missing:
        raise ConfigError(f"{path}: missing required names: {', '.join(missing)}")
    attribution = settings["attribution"]
    if not isinstance(attribution, str) or not attribution.strip():
        raise ConfigError(f"{path}: attribution {attribution!r}: expected the text to credit")
    tiers = tuple(settings["tiers"])
    rules = sorted(
        (
            _rule(path, index, entry, tiers, classes)
            for index, entry in enumerate(settings["rules"])
        ),
        key=lambda rule: rule.tier,  # stable: rules of one tier stay as written
    )
    lane_width = _metres(path, "lane_width", settings["lane_width"])
    line_widths = {}
    for tag, width in dict(settings["line_widths"]).items():
        key, sep, value = str(tag).partition("=")
        if not sep or not key or not value:
            raise ConfigError(
                f"{path}: line_widths key {tag!r}: expected 'key=value' or 'key=*', e.g. "
                "'highway=primary'"
            )
        line_widths[(key, value)] = _metres(path, f"line_widths[{tag!r}]", width)
    return TagTable(path, attribution, tiers, tuple(rules), lane_width, line_widths)


def _rule(path: Path, index: int, entry, tiers: tuple[str, ...], classes: tuple[str, ...]) -> Rule:
    where = f"{path}: rules[{index}] {entry!r}"
    if not isinstance(entry, tuple | list) or len(entry) != 4:
        raise ConfigError(f"{where}: expected (tier, key, values, class)")
    tier, key, values, class_name = entry
    if tier not in tiers:
        raise ConfigError(f"{where}: tier {tier!r} is not one of tiers: {', '.join(tiers)}")
    if class_name not in classes:
        raise ConfigError(
            f"{where}: class {class_name!r} is not a class; expected one of {', '.join(classes)}"
        )
    if not isinstance(key, str) or not key or not isinstance(values, str) or not values:
        raise ConfigError(f"{where}: expected a tag key and values such as 'a|b' or '*'")
    chosen = None if values == ANY_VALUE else frozenset(values.split("|"))
    return Rule(tiers.index(tier), key, chosen, classes.index(class_name))


def _metres(path: Path, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{path}: {name} = {value!r}: expected a positive width in metres")
    return float(value)
