"""Core utilities that need only numpy and OpenCV: errors, atomic output, code formats."""

import os

# OpenCV reads its decoder pixel limit once, when cv2 is imported. Every edgeocr module imports this
# package first (edgeocr/__init__.py imports edgeocr.core.errors), so the limit is set here, before
# any of them imports cv2; edgeocr.core.images documents it (OPENCV_MAX_PIXELS, the same value).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))
