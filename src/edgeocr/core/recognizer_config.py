"""The configuration of a line recogniser: input geometry, normalisation, charset and decoder.

It lives in ``core`` (pydantic only, no torch) because both sides need it: training builds and
exports the network from it, and the runtime rebuilds it from the exported model's sidecar to
preprocess images exactly as in training. ``edgeocr.models.config`` re-exports it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeocr.core.charset import DEFAULT_CHARSET, Charset

WidthPolicy = Literal["keep_aspect", "stretch"]


class RecognizerConfig(BaseModel):
    """Everything needed to feed a recogniser and read its output, besides the weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: str = Field(
        description="Architecture name known to edgeocr.models.factory, e.g. 'crnn_m' or 'svtr_s'.",
        min_length=1,
    )
    input_height: int = Field(
        default=32,
        ge=16,
        le=128,
        description=("Height in pixels every line is resized to; a multiple of 16 (the networks halve it 4 times)."),
    )
    max_width: int = Field(
        default=512,
        ge=16,
        le=4096,
        description=("Widest input in pixels; wider lines are squashed horizontally to fit. 512 px gives 128 frames."),
    )
    min_width: int = Field(
        default=32,
        ge=8,
        description="Narrowest input in pixels; narrower lines are padded with background up to it.",
    )
    width_multiple: int = Field(
        default=8,
        ge=4,
        description="Input widths are padded up to a multiple of this (a multiple of frame_stride).",
    )
    width_policy: WidthPolicy = Field(
        default="keep_aspect",
        description=(
            "'keep_aspect': resize to input_height keeping the aspect ratio, pad the width with "
            "background to a multiple of width_multiple, squash only lines wider than max_width. "
            "'stretch': resize every line to exactly max_width (static shapes for accelerators)."
        ),
    )
    frame_stride: int = Field(
        default=4,
        ge=1,
        description=(
            "Input pixels per output frame along the width (T = W / frame_stride); fixed by the architecture."
        ),
    )
    charset: str = Field(
        default=DEFAULT_CHARSET,
        description=("Characters the model reads, in class order; class 0 is the CTC blank, char i is class i+1."),
    )
    mean: float = Field(
        default=0.5,
        description=("Normalisation: pixel values scaled to [0, 1] have this subtracted (single grayscale channel)."),
    )
    std: float = Field(
        default=0.5,
        gt=0.0,
        description="Normalisation: after subtracting mean, values are divided by this.",
    )
    vertical: bool = Field(
        default=True,
        description=(
            "Treat a crop taller than vertical_ratio times its width as vertical text (upright "
            "characters stacked top to bottom): it is cut into square-ish cells laid side by side."
        ),
    )
    vertical_ratio: float = Field(
        default=1.5,
        gt=1.0,
        description="Height/width ratio above which a crop counts as vertical text.",
    )
    decoder: Literal["greedy", "beam"] = Field(
        default="greedy",
        description="CTC decoder the runtime uses: 'greedy' (best path) or 'beam' (prefix beam search).",
    )
    beam_width: int = Field(
        default=8,
        ge=1,
        le=128,
        description="Number of prefixes kept by the beam decoder.",
    )

    @field_validator("charset")
    @classmethod
    def _charset_is_valid(cls, value: str) -> str:
        Charset(value)  # raises ValueError on empty, duplicated or control characters
        return value

    @field_validator("input_height")
    @classmethod
    def _height_is_multiple_of_16(cls, value: int) -> int:
        if value % 16:
            raise ValueError(f"input_height must be a multiple of 16, got {value}")
        return value

    @model_validator(mode="after")
    def _widths_are_consistent(self) -> RecognizerConfig:
        if self.width_multiple % self.frame_stride:
            raise ValueError(
                f"width_multiple ({self.width_multiple}) must be a multiple of frame_stride ({self.frame_stride})"
            )
        for name in ("min_width", "max_width"):
            if getattr(self, name) % self.width_multiple:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be a multiple of width_multiple ({self.width_multiple})"
                )
        if self.min_width > self.max_width:
            raise ValueError(f"min_width ({self.min_width}) is larger than max_width ({self.max_width})")
        return self

    @property
    def charset_obj(self) -> Charset:
        """The charset as a :class:`Charset` (encode/decode, num_classes, fingerprint)."""
        return Charset(self.charset)

    @property
    def num_classes(self) -> int:
        """Output classes of the network: the charset plus the CTC blank."""
        return len(self.charset) + 1

    def frames_for_width(self, width: int) -> int:
        """Number of output frames the network produces for an input of ``width`` pixels."""
        return width // self.frame_stride
