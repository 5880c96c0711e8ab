"""The HTTP service (``edgeocr serve``, the ``serve`` extra): FastAPI on uvicorn, no torch.

``create_app(ServeSettings(...))`` builds the app; see :mod:`edgeocr.serve.app`.
"""

from edgeocr.serve.app import create_app
from edgeocr.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
