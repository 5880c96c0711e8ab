"""Batch reading at scale: result rows and their files (:mod:`.results`, light) and the Ray Data engine
(:mod:`.ray_read`, needs the ``scale`` extra: ``pip install 'edgeocr[scale]'``).

Nothing is imported here, so ``edgeocr.scale.results`` works without Ray.
"""
