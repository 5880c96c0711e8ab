"""Torch datasets of labelled text-line crops for training: folders, LMDB, on-the-fly synthetic, mixtures.

Every dataset returns, per index, a :class:`LineItem` (the raw uint8 crop and its text) or a
:class:`SkippedSample` saying why that index cannot be used (an undecodable image, a text the
charset cannot encode, a synthetic render that failed). Nothing raises for one bad sample: a
training run over millions of crops must not die on one of them. :class:`LineCollator` then
preprocesses the usable items with :mod:`edgeocr.core.lineimage`, exactly as the ONNX runtime
does, and hands the reasons of the dropped ones on with the batch, so the run can count them.

Only training imports this module (it needs torch); the runtime never does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from edgeocr.core.charset import DEFAULT_CHARSET, Charset
from edgeocr.core.errors import DataError, EdgeOCRError, ImageError
from edgeocr.core.failures import describe_failure
from edgeocr.core.files import read_file_bytes
from edgeocr.core.images import decode_image
from edgeocr.core.lineimage import pad_and_normalise, padded_width, to_line_strip
from edgeocr.core.lmdb_layout import NUM_SAMPLES_KEY, image_key, label_key, meta_key
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.data.labels import LABELS_FILE, read_labels

log = logging.getLogger(__name__)

LMDB_DATA_FILE = "data.mdb"
MAX_REASONS_LOGGED = 5  # a summary names the first few problems, not thousands


@dataclass(frozen=True)
class LineItem:
    """One usable sample: a cropped line image (uint8 gray or BGR) and its text."""

    image: np.ndarray
    text: str
    category: str
    source: str  # where it came from, for messages: "/data/labels.tsv:12", "/data/lmdb#5", ...


@dataclass(frozen=True)
class SkippedSample:
    """An index that yields no usable sample, and why (the reason names the file and line)."""

    reason: str


Sample = LineItem | SkippedSample


def _charset(charset: Charset | str) -> Charset:
    return charset if isinstance(charset, Charset) else Charset(charset)


def summarise_skipped(what: str, skipped: Sequence[str], total: int) -> None:
    if not skipped:
        return
    shown = "; ".join(skipped[:MAX_REASONS_LOGGED])
    more = f" (and {len(skipped) - MAX_REASONS_LOGGED} more)" if len(skipped) > MAX_REASONS_LOGGED else ""
    log.warning("%s: skipped %d of %d samples: %s%s", what, len(skipped), total, shown, more)


def _unencodable(text: str, charset: Charset) -> str | None:
    """The reason ``text`` cannot be a training target, or None when it can."""
    if not text:
        return "empty text"
    missing = charset.unknown_chars(text)
    return f"characters {missing!r} are not in the model's charset" if missing else None


class ListedImages(Dataset):
    """Images named by the entries of a listing file (``labels.tsv``, ``annotations.jsonl``).

    Entries that cannot be used were skipped when the listing was read: ``skipped`` lists them as
    ``FILE:LINE: reason``. An image that exists but does not decode is found only when it is read
    and comes back as a :class:`SkippedSample`. A subclass turns an entry and its image into an item.
    """

    def __init__(self, listing: Path, entries: Sequence[Any], skipped: Sequence[str]) -> None:
        self.listing = listing
        self.entries = list(entries)
        self.skipped: list[str] = list(skipped)
        summarise_skipped(str(listing), self.skipped, len(self.entries) + len(self.skipped))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Any:
        entry = self.entries[index]
        source = f"{self.listing}:{entry.line}"
        try:
            # Checked before it is read: a regular file under the size cap (edgeocr.core.files).
            image = decode_image(read_file_bytes(entry.path), str(entry.path))
        except ImageError as exc:
            return SkippedSample(f"{source}: {exc}")
        except Exception as exc:  # an odd file costs its sample, not the run (Ctrl-C still stops it)
            return SkippedSample(f"{source}: {describe_failure(exc)}")
        return self.item(entry, image, source)

    def item(self, entry: Any, image: np.ndarray, source: str) -> Any:
        raise NotImplementedError


class LabelledFolder(ListedImages):
    """A folder of crops with ``labels.tsv`` (``relative/path<TAB>text`` per line, UTF-8).

    Lines that cannot be used (no TAB, empty text, characters outside the charset, a missing
    image) are skipped when the folder is opened (see :class:`ListedImages`). A missing
    ``labels.tsv``, or one without a single usable line, raises :class:`DataError` naming the file.
    The category of an item is the first folder of its relative path ("" at the top level).
    """

    def __init__(self, root: Path | str, charset: Charset | str = DEFAULT_CHARSET) -> None:
        self.root = Path(root)
        # A labels file may be given instead of its folder (its paths are relative to its folder).
        labels_path = self.root if self.root.is_file() else self.root / LABELS_FILE
        samples, skipped = read_labels(self.root, _charset(charset), strict=False, check_files=True)
        super().__init__(labels_path, samples, skipped)

    def item(self, entry: Any, image: np.ndarray, source: str) -> Sample:
        return LineItem(image=image, text=entry.text, category=entry.category, source=source)


class LmdbLines(Dataset):
    """Line crops in LMDB: ``num-samples``, ``image-%09d`` (encoded image), ``label-%09d`` (UTF-8).

    Keys are 1-based, as written by ``edgeocr synth lines --format lmdb`` and the common scene
    text repositories; an optional ``meta-%09d`` JSON gives the category. The environment is
    opened lazily in each process that reads: an LMDB handle must not cross a fork into
    DataLoader workers (each worker keeps its own; the main process opens it per read). Texts are
    checked against the charset when read.
    """

    def __init__(self, root: Path | str, charset: Charset | str = DEFAULT_CHARSET) -> None:
        self.root = Path(root)
        self.charset = _charset(charset)
        if not (self.root / LMDB_DATA_FILE).is_file():
            raise DataError(f"{self.root}: not an LMDB dataset (no {LMDB_DATA_FILE})")
        env = self._open()
        try:
            with env.begin() as txn:
                raw = txn.get(NUM_SAMPLES_KEY)
        finally:
            env.close()
        try:
            self.count = int(raw.decode()) if raw is not None else -1
        except ValueError:
            self.count = -1
        if self.count < 0:
            raise DataError(f"{self.root}: LMDB has no valid {NUM_SAMPLES_KEY.decode()!r} key")
        if self.count == 0:
            raise DataError(f"{self.root}: LMDB dataset holds no samples")
        self.skipped: list[str] = []  # problems show up per sample, when read
        self._env: Any = None
        self._env_pid: int | None = None

    def _open(self) -> Any:
        import lmdb  # the synth/train extras install it

        try:
            return lmdb.open(str(self.root), readonly=True, lock=False, readahead=False, meminit=False, max_readers=512)
        except lmdb.Error as exc:
            raise DataError(f"{self.root}: cannot open LMDB ({exc})") from exc

    def _read(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if get_worker_info() is None:
            # The main process may fork DataLoader workers later, and py-lmdb refuses to open an
            # environment that a forked parent still holds: open, read, close (about 60 us).
            env = self._open()
            try:
                with env.begin() as txn:
                    return [txn.get(key) for key in keys]
            finally:
                env.close()
        if self._env is None or self._env_pid != os.getpid():
            self._env, self._env_pid = self._open(), os.getpid()
        with self._env.begin() as txn:
            return [txn.get(key) for key in keys]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_env"], state["_env_pid"] = None, None  # reopened by whoever unpickles it
        return state

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        key = index + 1
        source = f"{self.root}#{key}"
        image_bytes, label_bytes, meta_bytes = self._read([image_key(key), label_key(key), meta_key(key)])
        if image_bytes is None or label_bytes is None:
            return SkippedSample(f"{source}: image or label key missing")
        try:
            text = label_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return SkippedSample(f"{source}: label is not UTF-8")
        problem = _unencodable(text, self.charset)
        if problem:
            return SkippedSample(f"{source}: {problem}")
        try:
            image = decode_image(image_bytes, source)
        except ImageError as exc:
            return SkippedSample(str(exc))
        return LineItem(image=image, text=text, category=_lmdb_category(meta_bytes), source=source)


def _lmdb_category(meta_bytes: bytes | None) -> str:
    if meta_bytes is None:
        return ""
    try:
        meta = json.loads(meta_bytes)
    except ValueError:
        return ""
    return str(meta.get("category", "")) if isinstance(meta, dict) else ""


class OnTheFlySynthetic(Dataset):
    """``n_per_epoch`` synthetic samples rendered on the fly, new ones each epoch, all reproducible.

    Index ``i`` of epoch ``e`` is sample ``e * n_per_epoch + i`` of a synthesizer seeded with
    ``seed``: it depends only on ``(seed, e, i)``, whatever the worker count. Call
    :meth:`set_epoch` before the epoch's DataLoader iterator is created (workers fork a copy of
    the dataset then, so workers must not be persistent). The synthesizer is built lazily in each
    process and never pickled. Subclasses name it in :meth:`synthesizer_type`.
    """

    def __init__(
        self,
        n_per_epoch: int,
        seed: int,
        charset: Charset | None = None,
        template_files: Sequence[str] = (),
        font_dirs: Sequence[str] = (),
    ) -> None:
        if n_per_epoch < 1:
            raise ValueError(f"n_per_epoch must be at least 1, got {n_per_epoch}")
        self.n_per_epoch = int(n_per_epoch)
        self.seed = int(seed)
        self.charset = charset
        self.template_files = tuple(str(t) for t in template_files)
        self.font_dirs = tuple(str(f) for f in font_dirs)
        self.epoch = 0
        self.skipped: list[str] = []
        self._synthesizer: Any = None
        self._generator()  # fail now on bad templates or missing fonts, not in a worker

    def synthesizer_type(self) -> type:
        raise NotImplementedError

    def _generator(self) -> Any:
        if self._synthesizer is None:
            from edgeocr.synth.fonts import discover_fonts
            from edgeocr.synth.templates import load_catalogue

            catalogue = load_catalogue(list(self.template_files), charset=self.charset)
            fonts = discover_fonts(list(self.font_dirs))
            fonts.require("text")
            self._synthesizer = self.synthesizer_type()(catalogue, fonts, self.seed)
        return self._synthesizer

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_synthesizer"] = None  # holds compiled templates (closures); rebuilt where it is used
        return state

    def set_epoch(self, epoch: int) -> None:
        """Render the samples of ``epoch`` from now on."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_per_epoch

    def sample_index(self, index: int) -> int:
        """The generator's sample number for ``index`` in the current epoch."""
        return self.epoch * self.n_per_epoch + int(index)

    def _render(self, index: int, what: str) -> tuple[Any, str]:
        """(the generator's sample for ``index``, or a :class:`SkippedSample` when rendering failed; its source)."""
        number = self.sample_index(index)
        source = f"{what} seed={self.seed} sample={number}"
        try:
            return self._generator().sample(number), source
        except EdgeOCRError:
            raise  # missing fonts or bad templates concern every sample: stop with the message
        except Exception as exc:  # one failed render costs one sample, not the run
            return SkippedSample(f"{source}: rendering failed: {type(exc).__name__}: {exc}"), source


class SyntheticLines(OnTheFlySynthetic):
    """Synthetic line crops (:class:`~edgeocr.synth.lines.LineSynthesizer`) rendered on the fly; see
    :class:`OnTheFlySynthetic`."""

    def __init__(
        self,
        n_per_epoch: int,
        seed: int,
        charset: Charset | str = DEFAULT_CHARSET,
        template_files: Sequence[str] = (),
        font_dirs: Sequence[str] = (),
    ) -> None:
        super().__init__(n_per_epoch, seed, _charset(charset), template_files, font_dirs)

    def synthesizer_type(self) -> type:
        from edgeocr.synth.lines import LineSynthesizer

        return LineSynthesizer

    def __getitem__(self, index: int) -> Sample:
        sample, source = self._render(index, "synthetic")
        if isinstance(sample, SkippedSample):
            return sample
        problem = _unencodable(sample.text, self.charset)
        if problem:
            return SkippedSample(f"{source}: {problem}")
        return LineItem(image=sample.image, text=sample.text, category=sample.category, source=source)


class InMemorySamples(Dataset):
    """Samples (lines or scenes) held in memory, e.g. a fixed held-out synthetic validation set rendered once."""

    def __init__(self, samples: Sequence[Any]) -> None:
        self.samples = list(samples)
        self.skipped: list[str] = [s.reason for s in self.samples if isinstance(s, SkippedSample)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        return self.samples[index]


def render_synthetic(
    count: int,
    seed: int,
    charset: Charset | str = DEFAULT_CHARSET,
    template_files: Sequence[str] = (),
    font_dirs: Sequence[str] = (),
) -> InMemorySamples:
    """``count`` synthetic samples of ``seed`` rendered now and kept in memory (a fixed set)."""
    synthetic = SyntheticLines(count, seed, charset, template_files, font_dirs)
    return InMemorySamples([synthetic[i] for i in range(count)])


def _apportion(total: int, ratios: Sequence[float]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``ratios`` (largest remainder)."""
    weights = np.asarray(ratios, dtype=np.float64) / float(np.sum(ratios))
    exact = weights * total
    parts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - parts), kind="stable")[: total - int(parts.sum())]:
        parts[i] += 1
    return [int(p) for p in parts]


class Mixed(Dataset):
    """Draws from several datasets in given ratios, e.g. a user's crops plus synthetic data.

    An epoch has ``length`` samples (default: the sum of the datasets' lengths); source ``k``
    provides ``ratios[k]`` of them, a small dataset being cycled through as often as needed
    and a large one sampled without repetition. Which sample lands on which index is a
    shuffle that depends only on ``(seed, epoch)``; :meth:`set_epoch` draws a new one and
    forwards the epoch to datasets that have ``set_epoch``.
    """

    def __init__(
        self, datasets: Sequence[Dataset], ratios: Sequence[float], length: int | None = None, seed: int = 0
    ) -> None:
        if not datasets:
            raise ValueError("Mixed needs at least one dataset")
        if len(ratios) != len(datasets):
            raise ValueError(f"got {len(ratios)} ratios for {len(datasets)} datasets")
        if any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(f"ratios must be non-negative with a positive sum, got {list(ratios)}")
        for dataset, ratio in zip(datasets, ratios, strict=True):
            if ratio > 0 and len(dataset) == 0:  # type: ignore[arg-type]
                raise ValueError("a dataset with a positive ratio is empty")
        self.datasets = list(datasets)
        self.ratios = [float(r) for r in ratios]
        self.length = int(length) if length is not None else sum(len(d) for d in datasets)  # type: ignore[arg-type]
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")
        self.seed = int(seed)
        self.epoch = 0
        self._plan = self._make_plan(0)

    @property
    def skipped(self) -> list[str]:
        """Problems the member datasets found when they were opened."""
        return [reason for d in self.datasets for reason in getattr(d, "skipped", [])]

    def _make_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, 0x313D])
        counts = _apportion(self.length, self.ratios)
        sources = np.repeat(np.arange(len(self.datasets)), counts)
        rng.shuffle(sources)
        indices = np.zeros(self.length, dtype=np.int64)
        for k, (dataset, count) in enumerate(zip(self.datasets, counts, strict=True)):
            if count == 0:
                continue
            size = len(dataset)  # type: ignore[arg-type]
            cycles = -(-count // size)
            order = np.concatenate([rng.permutation(size) for _ in range(cycles)])[:count]
            indices[sources == k] = order
        return sources, indices

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for ``epoch`` and pass the epoch on to the member datasets."""
        self.epoch = int(epoch)
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)  # type: ignore[union-attr]
        self._plan = self._make_plan(self.epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        sources, indices = self._plan
        return self.datasets[int(sources[index])][int(indices[index])]


def require_usable(dataset: Dataset, name: str, collate: Callable[[list[Any]], Any] | None = None) -> None:
    """Raise :class:`DataError` naming ``name`` when no sample of ``dataset`` can be trained on.

    Samples are tried in order until one is usable (so a healthy dataset costs one sample): with
    ``collate`` (a :class:`LineCollator`, the detector's collate function), one that survives it;
    else one that is not a :class:`SkippedSample`. A folder where no image decodes, or whose labels
    all fail, thus stops a run before it starts instead of training on nothing and exporting an
    untrained model.
    """
    reasons: list[str] = []
    total = len(dataset)  # type: ignore[arg-type]
    for index in range(total):
        sample = dataset[index]
        if collate is None:
            if sample is not None and not isinstance(sample, SkippedSample):
                return
            reasons.append(sample.reason if isinstance(sample, SkippedSample) else "the dataset returned no sample")
        else:
            batch = collate([sample])
            if len(batch):
                return
            reasons += list(batch.skipped)
    shown = "; ".join(dict.fromkeys(reasons[:MAX_REASONS_LOGGED]))
    raise DataError(
        f"{name}: no usable sample among its {total}: every image fails to load or its label cannot be "
        f"trained on ({shown}{' ...' if len(reasons) > MAX_REASONS_LOGGED else ''}); nothing was trained"
    )


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Call ``dataset.set_epoch(epoch)`` when the dataset has one (synthetic and mixed datasets)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)  # type: ignore[union-attr]


def open_dataset(path: Path | str, charset: Charset | str = DEFAULT_CHARSET) -> LabelledFolder | LmdbLines:
    """A ``labels.tsv`` folder, a labels file (``.tsv``) or an LMDB directory, told apart by their files."""
    path = Path(path)
    if path.is_file() and path.suffix == ".tsv":
        return LabelledFolder(path, charset)
    if not path.is_dir():
        raise DataError(f"{path}: no such dataset directory")
    if (path / LMDB_DATA_FILE).is_file():
        return LmdbLines(path, charset)
    return LabelledFolder(path, charset)  # raises DataError naming labels.tsv when it is missing


# --- batching ---------------------------------------------------------------------------------


def min_ctc_frames(labels: Sequence[int]) -> int:
    """Frames CTC needs for ``labels``: one per label, plus a blank between equal neighbours."""
    repeats = sum(1 for a, b in zip(labels, labels[1:], strict=False) if a == b)
    return len(labels) + repeats


@dataclass
class LineBatch:
    """A collated batch. Not frozen: Lightning moves it to the device field by field.

    ``images`` float32 ``[N, 1, H, W]``; ``targets`` the class indices of all texts,
    concatenated; ``target_lengths`` and ``input_lengths`` (output frames of each item's own
    padded width, so frames computed on padding are ignored) are ``[N]`` int64. ``skipped``
    holds the reasons of the samples dropped from this batch.
    """

    images: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    input_lengths: torch.Tensor
    texts: list[str]
    categories: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def pin_memory(self) -> LineBatch:
        """Called by DataLoader(pin_memory=True) for custom batch types."""
        self.images = self.images.pin_memory()
        self.targets = self.targets.pin_memory()
        self.target_lengths = self.target_lengths.pin_memory()
        self.input_lengths = self.input_lengths.pin_memory()
        return self


class LineCollator:
    """Turns samples into a :class:`LineBatch` the way the runtime prepares lines.

    Each crop goes through :func:`~edgeocr.core.lineimage.to_line_strip`, then every strip is
    padded with its own background to the widest padded width of the batch by
    :func:`~edgeocr.core.lineimage.pad_and_normalise`. Skipped samples, ``None`` items, crops
    that cannot be preprocessed, texts the charset cannot encode and (when
    ``drop_too_long``) texts with more characters than the image has frames are dropped and
    their reasons kept in ``LineBatch.skipped``. Picklable, for DataLoader workers.
    """

    def __init__(self, cfg: RecognizerConfig, drop_too_long: bool = True) -> None:
        self.cfg = cfg
        self.charset = cfg.charset_obj
        self.drop_too_long = drop_too_long

    def __call__(self, samples: Sequence[Sample | None]) -> LineBatch:
        cfg = self.cfg
        strips: list[np.ndarray] = []
        widths: list[int] = []
        labels: list[list[int]] = []
        texts: list[str] = []
        categories: list[str] = []
        skipped: list[str] = []
        for sample in samples:
            if sample is None:
                skipped.append("the dataset returned no sample")
                continue
            if isinstance(sample, SkippedSample):
                skipped.append(sample.reason)
                continue
            try:
                strip = to_line_strip(sample.image, cfg)
            except (ImageError, cv2.error, ValueError) as exc:
                skipped.append(f"{sample.source}: cannot preprocess the image: {exc}")
                continue
            try:
                encoded = self.charset.encode(sample.text)
            except ValueError as exc:
                skipped.append(f"{sample.source}: {exc}")
                continue
            width = padded_width(strip.shape[1], cfg)
            frames = cfg.frames_for_width(width)
            if self.drop_too_long and frames < min_ctc_frames(encoded):
                skipped.append(
                    f"{sample.source}: text of {len(encoded)} characters needs "
                    f"{min_ctc_frames(encoded)} frames, the image gives {frames}"
                )
                continue
            strips.append(strip)
            widths.append(width)
            labels.append(encoded)
            texts.append(sample.text)
            categories.append(sample.category)
        batch_width = max(widths, default=cfg.min_width)
        if strips:
            images = np.stack([pad_and_normalise(strip, cfg, batch_width) for strip in strips])
        else:
            images = np.zeros((0, 1, cfg.input_height, batch_width), dtype=np.float32)
        return LineBatch(
            images=torch.from_numpy(images),
            targets=torch.tensor([c for line in labels for c in line], dtype=torch.int64),
            target_lengths=torch.tensor([len(line) for line in labels], dtype=torch.int64),
            input_lengths=torch.tensor([cfg.frames_for_width(w) for w in widths], dtype=torch.int64),
            texts=texts,
            categories=categories,
            skipped=skipped,
        )
