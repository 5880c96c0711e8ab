"""A :class:`~edgeocr.runtime.reader.LineDetector` on top of the PP-OCR text detector of RapidOCR.

``rapidocr-onnxruntime`` (installed ``--no-deps`` by make, beside the ``edgeocr[ppocr-detector]``
extra) ships the PP-OCRv4 DB detector as an ONNX file inside the wheel, so nothing is downloaded at
run time. Only its detector is used:
RapidOCR's ``TextDetector`` object supplies the resize/normalise step and the DB post-processing
(binarise, box, unclip), and the ONNX file runs in a session of ours, built like every other model's
from an :class:`~edgeocr.runtime.recognizer.EngineConfig` (threads, no spin-waiting). This adapter
calls those pieces itself instead of ``TextDetector.__call__``, because that call stores its resize
step on the shared object (not thread-safe) and drops the box scores. Boxes come back in the input
image's pixels, corners in the order top-left, top-right, bottom-right, bottom-left, lines sorted in
reading order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

from edgeocr.core.crops import order_quad, quad_angle
from edgeocr.core.errors import EdgeOCRError, ImageError, ModelError
from edgeocr.runtime.detector import reading_order
from edgeocr.runtime.protocols import DetectedLine
from edgeocr.runtime.recognizer import EngineConfig, session_options

MISSING_EXTRA = (
    "the RapidOCR detector needs the 'rapidocr-onnxruntime' package: "
    "pip install 'edgeocr[ppocr-detector]' && pip install --no-deps rapidocr-onnxruntime==1.4.4 (make install does both)"
)


class RapidOCRDetectorConfig(BaseModel):
    """Settings of the PP-OCR DB detector. Defaults are RapidOCR's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_side_len: int = Field(
        default=2000,
        ge=32,
        description="Images whose longer side exceeds this are downscaled before detection.",
    )
    limit_side_len: int = Field(
        default=736, ge=32, description="Side length the detector resizes to (see limit_type); rounded to 32."
    )
    max_input_pixels: int = Field(
        default=4_000_000,
        ge=32 * 32,
        description=(
            "The network's input never has more pixels than this (4 MP: a 2000 x 2000 frame, about 0.55 GB "
            "of memory in the network). limit_type 'min' upscales a strip until its short side reaches "
            "limit_side_len, which would give a 2000 x 100 strip 10.8 MP (2.3 GB) and a one-pixel strip "
            "1 million pixels of width (12 GiB); such images are resized to this many pixels instead."
        ),
    )
    limit_type: Literal["min", "max"] = Field(
        default="min",
        description=(
            "'min': upscale so the shorter side is at least limit_side_len; "
            "'max': downscale so the longer side is at most limit_side_len."
        ),
    )
    thresh: float = Field(default=0.3, gt=0.0, lt=1.0, description="Probability-map threshold for text pixels.")
    box_thresh: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Boxes whose mean text probability is below this are dropped.",
    )
    unclip_ratio: float = Field(
        default=1.6, gt=0.0, description="How far the shrunk text kernels are grown back into line boxes."
    )
    max_candidates: int = Field(default=1000, ge=1, description="At most this many contours are turned into boxes.")
    use_dilation: bool = Field(default=True, description="Dilate the text mask (2x2) before finding boxes.")
    score_mode: Literal["fast", "slow"] = Field(
        default="fast", description="'fast': box score over the bounding box; 'slow': over the exact contour."
    )
    min_box_side: int = Field(
        default=4, ge=1, description="Boxes narrower or shorter than this many pixels are dropped."
    )
    intra_op_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads per operator; 0: its default.")
    inter_op_threads: int = Field(default=0, ge=0, description="ONNX Runtime threads across operators; 0: its default.")


def _import_rapidocr() -> tuple[Path, Any, Any]:
    """The package folder, its ``TextDetector`` class and its YAML reader; a clear error if missing."""
    try:
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
        from rapidocr_onnxruntime.utils import read_yaml
    except ImportError as exc:
        raise EdgeOCRError(f"{MISSING_EXTRA} ({exc})") from None
    return Path(rapidocr_onnxruntime.__file__).parent, TextDetector, read_yaml


def _rapidocr_size(height: int, width: int, limit_side_len: int, limit_type: str) -> tuple[int, int]:
    """The input size RapidOCR's ``DetPreProcess.resize`` gives (multiples of 32; a side may round to 0)."""
    if limit_type == "max":
        ratio = limit_side_len / max(height, width) if max(height, width) > limit_side_len else 1.0
    else:
        ratio = limit_side_len / min(height, width) if min(height, width) < limit_side_len else 1.0
    return int(round(int(height * ratio) / 32) * 32), int(round(int(width * ratio) / 32) * 32)


def _bounded_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """Multiples of 32 near the aspect of ``height`` x ``width`` with at most ``max_pixels`` pixels, each side >= 32
    (an extreme strip is squashed along its length rather than exceed the budget)."""
    scale = math.sqrt(max_pixels / (height * width))
    new_h = max(32, int(height * scale) // 32 * 32)
    new_w = max(32, int(width * scale) // 32 * 32)
    if new_h * new_w > max_pixels:  # a side was raised to 32: take it out of the other one
        if new_h > new_w:
            new_h = max(32, max_pixels // new_w // 32 * 32)
        else:
            new_w = max(32, max_pixels // new_h // 32 * 32)
    return new_h, new_w


class RapidOCRDetector:
    """PP-OCRv4 text-line detector (from rapidocr-onnxruntime). ``detect`` is thread-safe."""

    def __init__(self, config: RapidOCRDetectorConfig | None = None) -> None:
        self.config = config or RapidOCRDetectorConfig()
        root, detector_class, read_yaml = _import_rapidocr()
        det = dict(read_yaml(root / "config.yaml")["Det"])
        model_path = root / det["model_path"]
        if not model_path.is_file():
            raise ModelError(f"the RapidOCR detector model {model_path} is missing; reinstall rapidocr-onnxruntime")
        cfg = self.config
        det.update(
            model_path=str(model_path),
            limit_side_len=cfg.limit_side_len,
            limit_type=cfg.limit_type,
            thresh=cfg.thresh,
            box_thresh=cfg.box_thresh,
            unclip_ratio=cfg.unclip_ratio,
            max_candidates=cfg.max_candidates,
            use_dilation=cfg.use_dilation,
            score_mode=cfg.score_mode,
            use_cuda=False,
            use_dml=False,
            # RapidOCR reads -1 as "ONNX Runtime's default".
            intra_op_num_threads=cfg.intra_op_threads or -1,
            inter_op_num_threads=cfg.inter_op_threads or -1,
        )
        try:
            self._detector = detector_class(det)
            # Our own session on the same file: RapidOCR's lets idle threads spin, and in a reader they
            # would spin on the cores the recogniser needs next (see EngineConfig.spin_wait).
            engine = EngineConfig(
                intra_op_threads=cfg.intra_op_threads, inter_op_threads=cfg.inter_op_threads, spin_wait=False
            )
            self._session = ort.InferenceSession(
                str(model_path), session_options(engine), providers=list(engine.providers)
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime and RapidOCR raise various types
            raise ModelError(f"cannot load the RapidOCR detector {model_path}: {exc}") from exc
        self._detector.infer = None  # RapidOCR's session is not used: free it
        self._input_name = self._session.get_inputs()[0].name

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the network input for an image of this size (after the max_side_len downscale):
        RapidOCR's resize rule, bounded to ``max_input_pixels``."""
        # A fresh preprocessing step per call (TextDetector.__call__ would store it on the shared object).
        step = self._detector.get_preprocess(max(height, width))
        size = _rapidocr_size(height, width, step.limit_side_len, step.limit_type)
        if size[0] * size[1] <= self.config.max_input_pixels:
            return size
        return _bounded_size(height, width, self.config.max_input_pixels)

    def _input_tensor(self, image: np.ndarray) -> np.ndarray | None:
        """The network input for ``image``: RapidOCR's own preprocessing, or the same normalisation after a
        resize to at most ``max_input_pixels`` where RapidOCR's would give more."""
        height, width = image.shape[:2]
        step = self._detector.get_preprocess(max(height, width))
        native = _rapidocr_size(height, width, step.limit_side_len, step.limit_type)
        if native[0] * native[1] <= self.config.max_input_pixels:
            return step(image)  # RapidOCR's own resize (None where a side rounds to 0) and normalisation
        new_h, new_w = _bounded_size(height, width, self.config.max_input_pixels)
        shrinking = new_h * new_w < height * width
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return np.expand_dims(step.permute(step.normalize(resized)), axis=0).astype(np.float32)

    def detect(self, image: np.ndarray) -> list[DetectedLine]:
        """Text lines of a uint8 BGR or gray image, in reading order, in its pixel coordinates."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
            raise ImageError(f"the detector needs a uint8 gray or BGR image, got {image.dtype} {list(image.shape)}")
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        height, width = image.shape[:2]
        longest = max(height, width)
        if longest > self.config.max_side_len:
            scale = self.config.max_side_len / longest
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)

        detector = self._detector
        tensor = self._input_tensor(np.ascontiguousarray(image))
        if tensor is None:
            return []
        prediction = self._session.run(None, {self._input_name: tensor})[0]
        # The post-processing maps the probability map straight to the original image size.
        boxes, scores = detector.postprocess_op(prediction, (height, width))
        lines = []
        for box, score in zip(boxes, scores, strict=True):
            # Our corner order, not PP-OCR's (which starts at the leftmost corner): a tall box
            # tilted a few degrees must stay tall, or a vertical code would be cropped sideways.
            box = order_quad(box)
            box = detector.clip_det_res(box, height, width)
            box_width = np.linalg.norm(box[1] - box[0])
            box_height = np.linalg.norm(box[3] - box[0])
            if min(box_width, box_height) < self.config.min_box_side:
                continue
            lines.append(DetectedLine(poly=box, score=float(score), angle=quad_angle(box)))
        return reading_order(lines)
