"""Drawing reads onto an image (``edgeocr read --draw``); the drawing lives with the results."""

from edgeocr.runtime.results import REJECT_COLOUR, VALID_COLOUR, draw_reads

__all__ = ["REJECT_COLOUR", "VALID_COLOUR", "draw_reads"]
