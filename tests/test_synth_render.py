"""The renderer: every print process, surface and layout draws visible, deterministic codes."""

import dataclasses

import cv2
import numpy as np
import pytest

from edgeocr.synth.dotfont import FONT_5X7, GLYPH_STYLES, dot_glyph
from edgeocr.synth.fonts import discover_fonts
from edgeocr.synth.ink import DotParams, dot_matrix_mask
from edgeocr.synth.lines import LineSynthConfig, LineSynthesizer, ink_box, min_local_contrast
from edgeocr.synth.processes import apply_print, render_text_mask, sample_style
from edgeocr.synth.scenes import SceneSynthesizer
from edgeocr.synth.surfaces import SURFACES, TextureBank, cylinder_warp, make_surface
from edgeocr.synth.templates import PRINT_PROCESSES, load_catalogue


@pytest.fixture(scope="module")
def fonts():
    return discover_fonts()


@pytest.fixture(scope="module")
def bank():
    return TextureBank(0, per_kind=1)


def test_fonts_cover_every_look(fonts):
    assert len(fonts.text) >= 10, "Debian fonts missing: run `make fonts`"
    assert fonts.bold and fonts.mono and fonts.seven_segment and fonts.fourteen_segment and fonts.dot


def test_5x7_dot_font_covers_codes_and_taller_grids_are_sampled(fonts):
    for ch in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-/:.,#()+*&% ":
        assert FONT_5X7[ch].shape == (7, 5)
        assert FONT_5X7[ch].any() or ch == " "
    mono = fonts.mono[0]
    for cols, rows in ((7, 9), (10, 16)):
        glyph = dot_glyph("8", cols, rows, mono)
        assert glyph.shape == (rows, cols) and glyph.sum() > rows  # a real character, not a blob or nothing
        assert not glyph.all()


def test_a_printer_style_picks_one_design_per_character(fonts):
    designs = {style: dot_glyph("1", 5, 7, None, style) for style in range(GLYPH_STYLES)}
    assert designs[0] is FONT_5X7["1"] and len({g.tobytes() for g in designs.values()}) == 3
    # The flagged "1" has its flag's lowest dot apart from the stem: a pattern a "4" shares.
    assert designs[1][2].tolist() == [True, False, True, False, False]
    assert len({dot_glyph("0", 5, 7, None, style).tobytes() for style in range(GLYPH_STYLES)}) == 2
    assert all(dot_glyph("8", 5, 7, None, style) is FONT_5X7["8"] for style in range(GLYPH_STYLES))
    assert dot_glyph("1", 5, 5, None, 1).tolist() == designs[1][[0, 1, 3, 5, 6]].tolist()


def test_dot_matrix_draws_separate_dots_and_missing_dots_remove_ink(fonts):
    rng = np.random.default_rng(0)
    base = DotParams(
        grid=(5, 7), pitch=4.0, radius=1.2, p_missing=0.0, jitter=0.0, speed_wobble=0.0, slant=0.0, char_gap=1
    )
    full = dot_matrix_mask("8", base, rng, fonts.mono[0])
    # Every dot of the 5x7 "8" is a blob of its own.
    n_blobs = cv2.connectedComponents((full > 0.3).astype(np.uint8))[0] - 1
    assert n_blobs == FONT_5X7["8"].sum()
    sparse = dot_matrix_mask("8", dataclasses.replace(base, p_missing=0.5), rng, fonts.mono[0])
    assert sparse.sum() < full.sum()


@pytest.mark.parametrize("process", PRINT_PROCESSES)
def test_every_print_process_leaves_a_visible_mark(process, fonts, bank):
    rng = np.random.default_rng(1)
    text = "12:34" if process == "segment" else "LOT A1B2C3"
    style = sample_style([text], [process], fonts, rng, cap_height=24)
    assert style.process == process
    alpha = render_text_mask(text, style, 24, rng)
    assert alpha.shape[0] >= 18 and alpha.shape[1] > alpha.shape[0] * 2
    surface = make_surface(style.surface, alpha.shape[0] + 20, alpha.shape[1] + 20, rng, bank)
    full = np.zeros(surface.shape[:2], np.float32)
    full[10:-10, 10:-10] = alpha
    printed = apply_print(surface, full, style, rng, bank, 24)
    assert printed.shape == surface.shape and printed.dtype == np.float32
    difference = np.abs(printed - surface).mean(axis=2)
    inked, bare = difference[full > 0.5], difference[full == 0]
    assert inked.mean() > 4 * (bare.mean() + 0.5), f"{process}: mark not visible"


@pytest.mark.parametrize("kind", SURFACES)
def test_surfaces(kind, bank):
    rng = np.random.default_rng(2)
    surface = make_surface(kind, 60, 300, rng, bank)
    assert surface.shape == (60, 300, 3) and surface.dtype == np.float32
    assert surface.std() > 0.5  # textured, not flat


def test_cylinder_warp_keeps_size_and_darkens_edges():
    rng = np.random.default_rng(3)
    image = np.full((40, 200, 3), 200, np.uint8)
    warped, mask = cylinder_warp(image, rng)
    assert warped.shape == image.shape and mask is None
    assert warped[:, :5].mean() < warped[:, 95:105].mean()


def test_cylinder_warp_moves_the_mask_with_the_image():
    image = np.full((40, 200, 3), 220, np.uint8)
    mask = np.zeros((40, 200), np.uint8)
    image[10:30, 40:160], mask[10:30, 40:160] = 20, 255  # a dark bar where the "ink" is
    warped, moved = cylinder_warp(image, np.random.default_rng(5), mask)
    cols = np.nonzero(moved[20] > 127)[0]
    assert cols[0] < 40 and cols[-1] > 159  # the middle of the print spreads outwards
    dark = np.nonzero(warped[20, :, 0] < 110)[0]
    assert abs(int(dark[0]) - int(cols[0])) <= 1 and abs(int(dark[-1]) - int(cols[-1])) <= 1


class _InkProbe(LineSynthesizer):
    """Keeps the final crop's ink mask, which the generator otherwise only uses to judge legibility."""

    def _legible(self, image, ink, cap, vertical):
        self.ink, self.cap = ink, cap
        return super()._legible(image, ink, cap, vertical)


def test_curved_and_warped_lines_are_cropped_around_all_their_ink(fonts):
    # Before the ink travelled with the image, a cylinder's outward spread clipped the ends of
    # lines (labels naming characters the crop did not show).
    synth = _InkProbe(load_catalogue(), fonts, seed=4, config=LineSynthConfig(cylinder_p=1.0, capture_p=1.0))
    for i in range(12):
        synth.sample(i)
        ink = synth.ink
        border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
        assert (ink > 127).any() and border.max() <= 32, i


def test_faint_inkjet_drops_count_as_ink_of_the_crop_box():
    # Small drops rarely reach half coverage: a box around solid ink alone cut a dot-matrix
    # "BB 2027-11-21" down to "B 2027-11-2" in the gen3 synthetic test set (2026-11-21).
    ink = np.zeros((20, 100), np.uint8)
    ink[5:15, 30:40] = 255  # one solid stroke
    ink[8, 5] = ink[12, 90] = 90  # faint drops at both ends of the line
    assert ink_box(ink).tolist() == [[5, 5], [91, 15]]
    assert ink_box(np.zeros((4, 4), np.uint8)) is None


def test_wide_margins_leave_bare_surface_on_every_side(fonts):
    synth = _InkProbe(
        load_catalogue(), fonts, seed=3, config=LineSynthConfig(wide_margin_p=1.0, capture_p=0.0, cylinder_p=0.0)
    )
    for i in range(8):
        synth.sample(i)
        ys, xs = np.nonzero(synth.ink > 32)
        h, w = synth.ink.shape
        least = 0.6 * synth.cap - 1
        assert min(xs.min(), ys.min(), w - 1 - xs.max(), h - 1 - ys.max()) >= least, i


def test_local_contrast_finds_a_washed_out_stretch():
    gray = np.full((30, 300), 200, np.uint8)
    ink = np.zeros((30, 300), np.uint8)
    for x in range(20, 280, 20):  # ten strokes, 6 px wide
        ink[8:22, x : x + 6] = 255
    gray[ink > 0] = 60
    assert min_local_contrast(gray, ink, cap=14, vertical=False) > 100
    assert min_local_contrast(gray.T.copy(), ink.T.copy(), cap=14, vertical=True) > 100
    faded = gray.copy()
    faded[:, 200:] = 200  # glare erases the last strokes
    assert min_local_contrast(faded, ink, cap=14, vertical=False) < 5
    noisy = np.clip(faded + np.random.default_rng(0).normal(0, 20, faded.shape), 0, 255).astype(np.uint8)
    assert min_local_contrast(noisy, ink, cap=14, vertical=False) < 10  # noise alone reads as no ink


def test_line_samples_are_deterministic_and_order_free(fonts):
    catalogue = load_catalogue()
    a = LineSynthesizer(catalogue, fonts, seed=7)
    b = LineSynthesizer(catalogue, fonts, seed=7)
    forward = [a.sample(i) for i in range(12)]
    backward = [b.sample(i) for i in reversed(range(12))][::-1]
    for x, y in zip(forward, backward):
        assert x.text == y.text and np.array_equal(x.image, y.image)
    other = LineSynthesizer(catalogue, fonts, seed=8).sample(0)
    assert other.text != forward[0].text or not np.array_equal(other.image, forward[0].image)


def test_vertical_codes_render_as_tall_crops(tmp_path, fonts):
    path = tmp_path / "v.yaml"
    path.write_text(
        "templates: [{name: v, category: container, lines: ['{iso6346:compact}'], "
        "processes: [painted], vertical: 1.0}]\n"
    )
    synth = LineSynthesizer(load_catalogue([path], include_default=False), fonts, seed=0)
    for i in range(5):
        s = synth.sample(i)
        assert s.vertical and s.image.shape[0] > 2 * s.image.shape[1], s.image.shape


def test_scenes_label_every_line_inside_the_image(fonts):
    synth = SceneSynthesizer(load_catalogue(), fonts, seed=0)
    total = 0
    for i in range(4):
        scene = synth.sample(i)
        h, w = scene.image.shape[:2]
        for line in scene.lines:
            poly = np.array(line.poly)
            assert poly.shape == (4, 2) and line.text
            assert (poly[:, 0] > -2).all() and (poly[:, 0] < w + 2).all()
            assert (poly[:, 1] > -2).all() and (poly[:, 1] < h + 2).all()
        total += len(scene.lines)
    assert total >= 4
    again = SceneSynthesizer(load_catalogue(), fonts, seed=0).sample(3)
    assert np.array_equal(again.image, scene.image) and again.lines == scene.lines
