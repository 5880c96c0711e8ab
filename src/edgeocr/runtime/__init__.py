"""Torch-free inference: ONNX Runtime sessions, preprocessing and CTC decoding."""

from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

__all__ = ["EngineConfig", "OnnxRecognizer"]
