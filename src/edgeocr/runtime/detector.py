"""Find text lines with an exported ONNX detector (numpy, OpenCV and ONNX Runtime; no torch).

The numpy pre- and post-processing lives in :mod:`edgeocr.core.detection`, shared with training;
here: the network run, boxes scaled back to the original image, ordered (see
:func:`reading_order`) and returned as :class:`DetectedLine` quads, clockwise from the top-left
(:func:`order_quad`).

:class:`OnnxDetector` checks the model against its sidecar exactly as the recogniser does
(SHA-256 of the bytes it loads, input and output names) and refuses a mismatched pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeocr.core.crops import order_quad, quad_angle
from edgeocr.core.detection import (
    PreparedImage,
    boxes_from_probability_map,
    prepare_image,
    scale_to_original,
    stack_inputs,
)
from edgeocr.core.detector_config import DetectorConfig, DetectorSidecar, load_detector_sidecar
from edgeocr.core.sidecar import sidecar_path
from edgeocr.runtime.protocols import DetectedLine
from edgeocr.runtime.recognizer import EngineConfig, open_verified_session


def reading_order(lines: Sequence[DetectedLine]) -> list[DetectedLine]:
    """Lines top to bottom, and left to right within a row.

    Lines are taken by the height of their centre; one joins the current row when its centre
    lies above the lower half of every line already in it (their centre + half height), so
    neighbours on one row that sit a little higher or lower keep their left-to-right order.
    """

    def centre(line: DetectedLine) -> np.ndarray:
        return line.poly.mean(axis=0)

    def half_height(line: DetectedLine) -> float:
        ys = line.poly[:, 1]
        return float(ys.max() - ys.min()) / 2

    rows: list[list[DetectedLine]] = []
    limit = -np.inf
    for line in sorted(lines, key=lambda ln: float(centre(ln)[1])):
        cy = float(centre(line)[1])
        if rows and cy <= limit:
            rows[-1].append(line)
            limit = min(limit, cy + half_height(line))
        else:
            rows.append([line])
            limit = cy + half_height(line)
    return [line for row in rows for line in sorted(row, key=lambda ln: float(centre(ln)[0]))]


def lines_from_probability_map(prob: np.ndarray, prepared: PreparedImage, cfg: DetectorConfig) -> list[DetectedLine]:
    """The detected lines of one image from its (padded) probability map ``[H, W]``."""
    content = prob[: prepared.resized[0], : prepared.resized[1]]
    lines = []
    for quad, score in boxes_from_probability_map(content, cfg):
        original = order_quad(scale_to_original(quad, prepared.resized, prepared.original))
        lines.append(DetectedLine(poly=original, score=score, angle=quad_angle(original)))
    return reading_order(lines)


class OnnxDetector:
    """A verified ONNX text-line detector. ``detect`` is safe to call from several threads."""

    def __init__(
        self, model_path: Path | str, engine: EngineConfig | None = None, overrides: Mapping[str, Any] | None = None
    ) -> None:
        """``overrides``: configuration fields to use instead of the sidecar's (input size, thresholds), for
        studies that compare settings on one model; validated like the sidecar's own."""
        self.model_path = Path(model_path)
        self.engine = engine or EngineConfig()
        self.sidecar: DetectorSidecar = load_detector_sidecar(sidecar_path(self.model_path))
        self._config = (
            DetectorConfig.model_validate({**self.sidecar.config.model_dump(), **overrides})
            if overrides
            else self.sidecar.config
        )
        self._session = open_verified_session(
            self.model_path, self.sidecar.onnx_sha256, self.sidecar.input_name, self.sidecar.output_name, self.engine
        )

    @property
    def config(self) -> DetectorConfig:
        """The detector configuration: the sidecar's, with the constructor's ``overrides``."""
        return self._config

    def probability_maps(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a prepared ``[N, 3, H, W]`` batch; ``[N, H, W]`` core probabilities."""
        (output,) = self._session.run([self.sidecar.output_name], {self.sidecar.input_name: batch})
        return output[:, 0]

    def detect(self, image: np.ndarray) -> list[DetectedLine]:
        """The text lines of one uint8 gray or BGR image, in reading order."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[DetectedLine]]:
        """The text lines of each image. Images are sent ``engine.max_batch_size`` at a time, grouped
        by padded input size so that similar images share a batch and little is computed on padding."""
        cfg = self.config
        prepared = [prepare_image(image, cfg) for image in images]
        order = sorted(range(len(prepared)), key=lambda i: prepared[i].tensor.shape[1:])
        results: list[list[DetectedLine]] = [[] for _ in prepared]
        step = self.engine.max_batch_size
        for start in range(0, len(order), step):
            members = order[start : start + step]
            maps = self.probability_maps(stack_inputs([prepared[i] for i in members]))
            for index, prob in zip(members, maps, strict=True):
                results[index] = lines_from_probability_map(prob, prepared[index], cfg)
        return results
