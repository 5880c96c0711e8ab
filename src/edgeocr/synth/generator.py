"""What the line and scene generators share: their inputs and the per-run state built from them."""

from __future__ import annotations

import datetime as dt

from edgeocr.synth.capture import photometric_pipeline
from edgeocr.synth.fonts import FontLibrary
from edgeocr.synth.surfaces import TextureBank
from edgeocr.synth.templates import Catalogue, SamplingContext


class Synthesizer:
    """Deterministic generator base: a subclass's ``sample(i)`` depends only on (seed, i).

    ``config`` is the subclass's frozen pydantic config; it needs an ``anchor_date``.
    """

    def __init__(self, catalogue: Catalogue, fonts: FontLibrary, seed: int, config) -> None:
        self.catalogue = catalogue
        self.fonts = fonts
        self.seed = int(seed)
        self.config = config
        self.bank = TextureBank(self.seed)  # same seed, same textures in every worker
        self.context = SamplingContext(dt.datetime.combine(config.anchor_date, dt.time()))
        self.photometric = photometric_pipeline()
