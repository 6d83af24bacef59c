"""Figures drawn with OpenCV (matplotlib is not a dependency): the confusion-matrix heat-map."""

from collections.abc import Sequence

import cv2
import numpy as np
import torch

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SCALE = 0.5
_TITLE_SCALE = 0.55
_PAD = 14
_CELL_H = 40
_MIN_CELL_W = 72
_BAR_W = 18
# Light to dark blue (the ends and middle of the familiar "Blues" map), RGB.
_STOPS = np.array([[247, 251, 255], [107, 174, 214], [8, 48, 107]], dtype=np.float64)
_NO_DATA = (225, 225, 225)
_BLACK = (0, 0, 0)
_WHITE = (255, 255, 255)


def _colour(fraction: float) -> tuple[int, int, int]:
    position = min(max(fraction, 0.0), 1.0) * (len(_STOPS) - 1)
    low = min(int(position), len(_STOPS) - 2)
    mix = position - low
    rgb = (1 - mix) * _STOPS[low] + mix * _STOPS[low + 1]
    return tuple(int(round(v)) for v in rgb)


def _text_size(text: str, scale: float = _SCALE) -> tuple[int, int]:
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    return width, height + baseline


def _put_centred(image: np.ndarray, text: str, centre: tuple[int, int], colour, scale=_SCALE):
    (width, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
    origin = (int(centre[0] - width / 2), int(centre[1] + height / 2))
    cv2.putText(image, text, origin, _FONT, scale, colour, 1, cv2.LINE_AA)


def _put_vertical(image: np.ndarray, text: str, centre: tuple[int, int], scale=_SCALE):
    width, height = _text_size(text, scale)
    patch = np.full((height + 4, width + 4, 3), 255, dtype=np.uint8)
    _put_centred(patch, text, (patch.shape[1] // 2, patch.shape[0] // 2), _BLACK, scale)
    patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    top = centre[1] - patch.shape[0] // 2
    left = centre[0] - patch.shape[1] // 2
    image[top : top + patch.shape[0], left : left + patch.shape[1]] = np.minimum(
        image[top : top + patch.shape[0], left : left + patch.shape[1]], patch
    )


def render_confusion_matrix(
    cm: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    title: str = "Confusion matrix (% of each ground-truth class)",
) -> np.ndarray:
    """Heat-map of a (C, C) confusion matrix with rows normalised to fractions -> (H, W, 3) RGB.

    Rows are ground truth, columns prediction; each cell shows its percentage of the row, and a
    row with no ground-truth pixels is grey with "-".
    """
    if isinstance(cm, torch.Tensor):
        cm = cm.detach().cpu().numpy()
    cm = np.asarray(cm, dtype=np.float64)
    num_classes = cm.shape[0]
    if cm.shape != (num_classes, num_classes) or len(class_names) != num_classes:
        raise ValueError(
            f"confusion matrix {cm.shape} and {len(class_names)} class names do not match"
        )
    support = cm.sum(axis=1)
    fractions = np.divide(cm, support[:, None], out=np.zeros_like(cm), where=support[:, None] > 0)

    name_w = max(_text_size(name)[0] for name in class_names)
    text_h = _text_size("Ag")[1]
    cell_w = max(_MIN_CELL_W, name_w + 12)
    axis_w = text_h + _PAD  # the rotated "ground truth" axis title
    grid_left = _PAD + axis_w + name_w + _PAD
    grid_top = _PAD + 2 * (text_h + _PAD) + text_h + _PAD // 2
    grid_w, grid_h = num_classes * cell_w, num_classes * _CELL_H
    bar_left = grid_left + grid_w + _PAD
    width = max(
        bar_left + _BAR_W + _PAD + _text_size("100%")[0] + _PAD,
        _text_size(title, _TITLE_SCALE)[0] + 2 * _PAD,
    )
    height = grid_top + grid_h + _PAD
    image = np.full((height, width, 3), 255, dtype=np.uint8)

    _put_centred(image, title, (width // 2, _PAD + text_h // 2), _BLACK, _TITLE_SCALE)
    labels_y = grid_top - _PAD // 2 - text_h // 2
    _put_centred(image, "prediction", (grid_left + grid_w // 2, labels_y - text_h - _PAD), _BLACK)
    _put_vertical(image, "ground truth", (_PAD + text_h // 2, grid_top + grid_h // 2))
    for c, name in enumerate(class_names):
        _put_centred(image, name, (grid_left + c * cell_w + cell_w // 2, labels_y), _BLACK)
        row_y = grid_top + c * _CELL_H + _CELL_H // 2
        name_x = grid_left - _PAD - _text_size(name)[0]
        (_, h), _ = cv2.getTextSize(name, _FONT, _SCALE, 1)
        cv2.putText(image, name, (name_x, row_y + h // 2), _FONT, _SCALE, _BLACK, 1, cv2.LINE_AA)

    for row in range(num_classes):
        for col in range(num_classes):
            x0, y0 = grid_left + col * cell_w, grid_top + row * _CELL_H
            centre = (x0 + cell_w // 2, y0 + _CELL_H // 2)
            if support[row] == 0:
                cv2.rectangle(image, (x0, y0), (x0 + cell_w, y0 + _CELL_H), _NO_DATA, -1)
                _put_centred(image, "-", centre, _BLACK)
                continue
            fraction = float(fractions[row, col])
            cv2.rectangle(image, (x0, y0), (x0 + cell_w, y0 + _CELL_H), _colour(fraction), -1)
            text_colour = _WHITE if fraction > 0.5 else _BLACK
            _put_centred(image, f"{100 * fraction:.1f}%", centre, text_colour)
    for i in range(num_classes + 1):
        x, y = grid_left + i * cell_w, grid_top + i * _CELL_H
        cv2.line(image, (x, grid_top), (x, grid_top + grid_h), _WHITE, 1)
        cv2.line(image, (grid_left, y), (grid_left + grid_w, y), _WHITE, 1)
    # The diagonal (correct pixels) outlined so it reads at a glance.
    for c in range(num_classes):
        x0, y0 = grid_left + c * cell_w, grid_top + c * _CELL_H
        cv2.rectangle(image, (x0, y0), (x0 + cell_w, y0 + _CELL_H), _BLACK, 1)

    for y in range(grid_h):
        colour = _colour(1.0 - y / max(grid_h - 1, 1))
        cv2.line(image, (bar_left, grid_top + y), (bar_left + _BAR_W, grid_top + y), colour, 1)
    cv2.rectangle(image, (bar_left, grid_top), (bar_left + _BAR_W, grid_top + grid_h), _BLACK, 1)
    label_x = bar_left + _BAR_W + 4
    cv2.putText(image, "100%", (label_x, grid_top + text_h), _FONT, _SCALE, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, "0%", (label_x, grid_top + grid_h), _FONT, _SCALE, _BLACK, 1, cv2.LINE_AA)
    return image


# Distinct, colour-blind friendly series colours (Okabe-Ito), RGB.
_SERIES = [
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
]


def render_grouped_bars(
    values: dict[str, Sequence[float | None]],
    group_names: Sequence[str],
    title: str = "per-class IoU (%)",
) -> np.ndarray:
    """Grouped bar chart: one group per ``group_names`` entry, one bar per series in ``values``
    (fractions in [0, 1], None for no bar). Returns (H, W, 3) uint8 RGB."""
    series = list(values)
    plot_h, bar_w, gap = 240, 12, 18
    group_w = bar_w * len(series) + gap
    left, top = 44, 36
    legend_h = 20 * len(series)
    width = left + group_w * len(group_names) + _PAD
    height = top + plot_h + 46 + legend_h
    image = np.full((height, max(width, 420), 3), 255, dtype=np.uint8)
    cv2.putText(image, title, (left, 22), _FONT, _TITLE_SCALE, _BLACK, 1, cv2.LINE_AA)
    for percent in range(0, 101, 20):  # horizontal grid lines with their labels
        y = top + plot_h - int(plot_h * percent / 100)
        cv2.line(image, (left, y), (width - _PAD, y), (225, 225, 225), 1)
        cv2.putText(image, str(percent), (8, y + 4), _FONT, 0.4, _BLACK, 1, cv2.LINE_AA)
    for group, name in enumerate(group_names):
        x0 = left + gap // 2 + group * group_w
        for index, key in enumerate(series):
            value = values[key][group]
            if value is None:
                continue
            x = x0 + index * bar_w
            bar_h = int(round(plot_h * min(max(value, 0.0), 1.0)))
            colour = _SERIES[index % len(_SERIES)]
            cv2.rectangle(
                image, (x, top + plot_h - bar_h), (x + bar_w - 2, top + plot_h), colour, -1
            )
        _put_centred(image, name, (x0 + bar_w * len(series) // 2, top + plot_h + 14), _BLACK, 0.4)
    for index, key in enumerate(series):  # legend, one entry a line
        x = left
        y = top + plot_h + 34 + 20 * index
        cv2.rectangle(image, (x, y - 10), (x + 12, y + 2), _SERIES[index % len(_SERIES)], -1)
        cv2.putText(image, key, (x + 18, y), _FONT, 0.42, _BLACK, 1, cv2.LINE_AA)
    return image


def render_montage(rows: Sequence[Sequence[np.ndarray]], column_names: Sequence[str]) -> np.ndarray:
    """Tiles side by side, one row per sample, named columns: each tile (H, W, 3) uint8 RGB of one
    size. Returns (H, W, 3) uint8 RGB."""
    zoom = max(1, 128 // rows[0][0].shape[0])  # small tiles are enlarged (nearest) to be seen
    rows = [[np.repeat(np.repeat(tile, zoom, 0), zoom, 1) for tile in tiles] for tiles in rows]
    tile_h, tile_w = rows[0][0].shape[:2]
    header, border = 24, 4
    width = len(column_names) * (tile_w + border) + border
    height = header + len(rows) * (tile_h + border) + border
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    for column, name in enumerate(column_names):
        centre_x = border + column * (tile_w + border) + tile_w // 2
        _put_centred(image, name, (centre_x, header // 2), _BLACK, 0.42)
    for row, tiles in enumerate(rows):
        y = header + border + row * (tile_h + border)
        for column, tile in enumerate(tiles):
            x = border + column * (tile_w + border)
            image[y : y + tile_h, x : x + tile_w] = tile
    return image
