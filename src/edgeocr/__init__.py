"""edgeocr: read printed industrial codes in real time on a plain CPU or an edge GPU.

Importing the package is cheap and never imports torch: training and optimisation live behind
the ``train`` extra and are imported only by the commands that need them.
"""

__version__ = "0.1.0"

from edgeocr.core.errors import EdgeOCRError

__all__ = ["EdgeOCRError", "__version__"]
