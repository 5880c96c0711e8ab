"""Contact sheets: look at what was generated before training on it."""

from __future__ import annotations

import cv2
import numpy as np

TILE_W, TILE_H, CAPTION_H = 420, 44, 16


def line_sheet(items: list[tuple[np.ndarray, str]], columns: int = 3) -> np.ndarray:
    """Crops scaled to a common height with their labels underneath (vertical codes turned to fit)."""
    tiles = []
    for image, text in items:
        if image.shape[0] > 1.5 * image.shape[1]:
            image = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
        scale = TILE_H / image.shape[0]
        w = min(TILE_W, max(1, int(image.shape[1] * scale)))
        tile = np.full((TILE_H + CAPTION_H + 4, TILE_W + 6, 3), 255, np.uint8)
        tile[:TILE_H, :w] = cv2.resize(image, (w, TILE_H), interpolation=cv2.INTER_AREA)
        cv2.putText(
            tile, text[:60], (2, TILE_H + CAPTION_H - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 160), 1, cv2.LINE_AA
        )
        tiles.append(tile)
    return _grid(tiles, columns)


def scene_sheet(items: list[tuple[np.ndarray, list[dict]]], columns: int = 3, width: int = 480) -> np.ndarray:
    """Scenes with each labelled line's polygon and text drawn on."""
    tiles = []
    for image, lines in items:
        scale = width / image.shape[1]
        tile = cv2.resize(image, (width, int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        for line in lines:
            poly = (np.array(line["poly"], np.float32) * scale).astype(np.int32)
            cv2.polylines(tile, [poly], True, (0, 0, 255), 1, cv2.LINE_AA)
            x, y = poly[0]
            cv2.putText(
                tile,
                line["text"],
                (int(x), max(10, int(y) - 3)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.38,
                (0, 200, 0),
                1,
                cv2.LINE_AA,
            )
        tiles.append(tile)
    height = max(t.shape[0] for t in tiles)
    tiles = [
        cv2.copyMakeBorder(t, 0, height - t.shape[0] + 4, 0, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        for t in tiles
    ]
    return _grid(tiles, columns)


def _grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    if not tiles:
        return np.full((TILE_H, TILE_W, 3), 255, np.uint8)
    blank = np.full_like(tiles[0], 255)
    rows = []
    for i in range(0, len(tiles), columns):
        row = tiles[i : i + columns]
        row += [blank] * (columns - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)
