# Sourced (bash) by call1.sh and call2.sh, in the repository root, before any measurement:
# 1. says what the machine is: python3 -V, nvidia-smi, torch and ONNX Runtime as installed;
# 2. installs the carried wheelhouse (scripts/gpu/wheels/core, and wheels/synth when carried) into
#    $EDGEOCR_SITE with pip --no-index --find-links (nothing is downloaded there: there is no network);
#    a wheel that does not fit this Python is reported and the rest still installed, so that what the
#    machine already has is imported instead (a missing package then stops the script that needs it,
#    naming it);
# 3. puts $EDGEOCR_SITE and the repository's src first on PYTHONPATH (edgeocr runs from this checkout);
# 4. unpacks the carried fonts (call 2) and points the synthetic generator at them alone.
# Run again on a warm machine, it skips the install (a stamp file) and the unpacking.

PY=${PY:-python3}
EDGEOCR_SITE=${EDGEOCR_SITE:-/tmp/edgeocr-site}
echo "== $(date -u +%FT%TZ) $(hostname)"
echo "== python: $($PY -V 2>&1) at $(command -v "$PY")"
echo "== nvidia-smi"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu,clocks.sm --format=csv 2>&1 || echo "nvidia-smi failed"
mkdir -p "$EDGEOCR_SITE"
if [ ! -f "$EDGEOCR_SITE/.installed" ]; then
  for group in core synth; do
    dir=scripts/gpu/wheels/$group
    [ -f "$dir/requirements.txt" ] || { echo "== wheels/$group not carried"; continue; }
    echo "== installing wheels/$group into $EDGEOCR_SITE"
    if ! $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$EDGEOCR_SITE" --find-links "$dir" -r "$dir/requirements.txt"; then
      echo "== wheels/$group: the whole set did not install; one by one:"
      while read -r req; do
        [ -n "$req" ] || continue
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
          --target "$EDGEOCR_SITE" --find-links "$dir" "$req" >/dev/null 2>&1 \
          && echo "   installed $req" || echo "   NOT installed $req (no wheel for this Python: the machine's own is used, if any)"
      done < "$dir/requirements.txt"
    fi
  done
  touch "$EDGEOCR_SITE/.installed"
fi
export PYTHONPATH="$EDGEOCR_SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -f scripts/gpu/carry/fonts/fonts.tar.xz ]; then
  fonts=/tmp/edgeocr-fonts
  if [ ! -d "$fonts" ]; then mkdir -p "$fonts" && tar -xJf scripts/gpu/carry/fonts/fonts.tar.xz -C "$fonts"; fi
  export EDGEOCR_FONT_DIRS="$fonts" EDGEOCR_NO_SYSTEM_FONTS=1
  echo "== fonts: $(ls "$fonts" | wc -l) carried fonts in $fonts, system fonts off"
fi
$PY - <<'EOF'
import importlib
for name in ("torch", "onnxruntime", "onnx", "lightning", "numpy", "cv2", "pydantic", "rapidfuzz", "rapidocr",
             "albumentations", "lmdb", "pynvml", "psutil", "tensorrt", "edgeocr"):
    try:
        module = importlib.import_module(name)
        print(f"== {name} {getattr(module, '__version__', '')} {getattr(module, '__file__', '')}")
    except Exception as exc:
        print(f"== {name}: not importable ({type(exc).__name__}: {exc})")
try:
    import torch
    print(f"== torch.cuda: {torch.cuda.is_available()} {torch.version.cuda} "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}")
    import onnxruntime
    print(f"== onnxruntime providers: {onnxruntime.get_available_providers()}")
except Exception as exc:
    print(f"== {type(exc).__name__}: {exc}")
EOF
