"""What every stage script shares: logging set-up and turning input errors into one clear line."""

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from geoseg.errors import GeoSegError
from geoseg.hardware import keep_freed_memory


class ArgumentParser(argparse.ArgumentParser):
    """argparse that refuses a bad flag as the stages refuse bad data: one line naming the flag
    and the value, exit status 2 (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer of at least {minimum}")
        return value

    parse.__name__ = f"integer of at least {minimum}"
    return parse


def number_from(low: float, high: float = math.inf) -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` to ``high``, both included."""
    expected = f"a number of at least {low:g}" if high == math.inf else f"{low:g} to {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high or math.isinf(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value

    parse.__name__ = expected
    return parse


def run_script(main: Callable[[], None]) -> None:
    """Run ``main``; a GeoSegError (bad data, config or checkpoint) exits with its message, code 2.

    Set GEOSEG_DEBUG=1 to see the full traceback instead. Large freed blocks stay in the process
    for reuse (``geoseg.hardware.keep_freed_memory``; GEOSEG_KEEP_FREED_MEMORY=0 turns it off).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keep_freed_memory()
    try:
        main()
    except GeoSegError as error:
        if os.environ.get("GEOSEG_DEBUG"):
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        sys.exit(2)


def _one_line(error: GeoSegError) -> str:
    """The message itself, also when a DataLoader worker wrapped it in its traceback."""
    message = str(error)
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        prefix = f"{type(error).__module__}.{type(error).__name__}: "
        return last.removeprefix(prefix)
    return message
