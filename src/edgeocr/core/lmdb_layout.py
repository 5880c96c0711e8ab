"""The LMDB key layout of the common scene-text training repositories, 1-based:
``num-samples``, ``image-%09d`` (encoded image), ``label-%09d`` (UTF-8 text or JSON), and our
optional ``meta-%09d`` (JSON). Written by ``edgeocr synth --format lmdb``, read by training."""

NUM_SAMPLES_KEY = b"num-samples"


def image_key(i: int) -> bytes:
    return f"image-{i:09d}".encode()


def label_key(i: int) -> bytes:
    return f"label-{i:09d}".encode()


def meta_key(i: int) -> bytes:
    return f"meta-{i:09d}".encode()
