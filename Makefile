# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint wheel fonts chromium install peers bench-synth clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Exactly this torch: any other spec resolves to the CUDA build (gigabytes).
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	# PP-OCR's detector for --detector rapidocr, without the GUI opencv-python it asks for.
	$(BIN)/python -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	touch $@

install: $(STAMP)

fonts:
	@scripts/ensure-fonts.sh

# Debian's Chromium + ChromeDriver: the web page's browser test.
chromium:
	@scripts/ensure-chromium.sh

demo: $(STAMP) fonts
	$(BIN)/edgeocr read samples/lines --model default --threads 2 --json build/demo/reads.json --draw build/demo/drawn
	$(BIN)/edgeocr eval --data samples/lines --model default --threads 2 --json build/demo/samples-eval.json
	$(BIN)/edgeocr read samples/lines --model accurate --threads 2 --json build/demo/reads-accurate.json
	$(BIN)/edgeocr read samples/scenes/images --threads 2 \
		--json build/demo/scene-reads.json --draw build/demo/scenes-drawn
	$(BIN)/edgeocr synth lines --count 60 --seed 0 --workers 2 --out build/demo/lines --overwrite \
		--preview build/demo/lines-sheet.png --quiet
	$(BIN)/edgeocr synth scenes --count 6 --seed 0 --workers 2 --out build/demo/scenes --overwrite \
		--preview build/demo/scenes-sheet.png --quiet
	@echo "demo: reads in build/demo/reads.json (accurate: build/demo/reads-accurate.json) and build/demo/drawn/, whole scenes in build/demo/scene-reads.json and build/demo/scenes-drawn/; synthetic sheets in build/demo/*-sheet.png"

# The peers too: the EasyOCR import's parity tests need easyocr's own network and weights (nothing skips).
test: $(STAMP) fonts chromium peers lint
	$(BIN)/python -m pytest

# ruff: lint and format (check only; `ruff format src tests scripts` fixes). Import layers: tests/test_layers.py.
lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

# The wheel users install, in dist/: models with their sidecars and licences, no .pt training weights
# (tests/test_wheel.py builds, installs and reads with it). build/lib goes first: setuptools would put
# files an earlier build left there into the wheel.
wheel: $(STAMP)
	rm -rf build/lib build/bdist.*
	$(BIN)/python -m pip wheel --no-deps -w dist .

# EasyOCR, PP-OCRv4/v6 (RapidOCR) and Tesseract, offline, for edgeocr bench --peers.
peers: $(STAMP)
	scripts/install-peers.sh

bench-synth: $(STAMP) fonts
	$(BIN)/edgeocr study synth-speed --workers 2 --count 6000 --repeats 3

clean:
	rm -rf $(VENV) build dist .pytest_cache
