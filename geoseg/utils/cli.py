"""What every stage script shares: logging set-up and turning input errors into one clear line."""

import logging
import os
import sys
from collections.abc import Callable

from geoseg.errors import GeoSegError


def run_script(main: Callable[[], None]) -> None:
    """Run ``main``; a GeoSegError (bad data, config or checkpoint) exits with its message, code 2.

    Set GEOSEG_DEBUG=1 to see the full traceback instead.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except GeoSegError as error:
        if os.environ.get("GEOSEG_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
