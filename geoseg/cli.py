"""What every stage script shares: logging set-up and turning input errors into one clear line."""

import argparse
import logging
import os
import sys
from collections.abc import Callable

from geoseg.errors import GeoSegError

DEFAULT_SEED = 42


def stage_argument_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every training stage takes: the config, the seed and overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="path to a config module")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed set before the config builds its objects (weights, shuffling, augmentation); "
        f"default {DEFAULT_SEED}",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="override a config name the stage reads, e.g. weights_path=runs/seed_1/teacher "
        "log_name=seed_1/teacher (paths, log name, hardware, deterministic)",
    )
    return parser


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
