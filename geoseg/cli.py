"""What every stage script shares: logging set-up and turning input errors into one clear line."""

import logging
import os
import sys
from collections.abc import Callable

from geoseg.errors import GeoSegError
from geoseg.hardware import keep_freed_memory


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
