"""The web page in a real browser: headless Debian Chromium (Selenium + chromedriver) uploads a scene, and the
page must list the same reads as the API and draw their boxes on the canvas."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import uvicorn

from edgeocr.serve.app import create_app
from edgeocr.serve.settings import ServeSettings

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "samples" / "scenes" / "images" / "00000000.jpg"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BOX_COLOURS = {True: (0, 200, 83), False: (230, 20, 60)}  # valid, invalid (RGB), as in static/index.html
SCREENSHOT = os.environ.get("EDGEOCR_PAGE_SCREENSHOT")  # a PNG of the page, to look at by eye
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,1000",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    settings = ServeSettings(mode="detector", detector="rapidocr", engine_threads=1)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: run `make chromium` (scripts/ensure-chromium.sh) to install "
            "Debian's Chromium and ChromeDriver for the web-page test"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


_PIXELS = """
const [points] = arguments;
const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
return {width: canvas.width, height: canvas.height,
        pixels: points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)))};
"""


def edge_points(poly: list[list[float]]) -> list[tuple[int, int]]:
    """Points on the four edges of a polygon (a quarter, half and three quarters along each)."""
    corners = np.asarray(poly, np.float64)
    return [
        tuple(int(v) for v in np.floor(corners[i] + t * (corners[(i + 1) % 4] - corners[i])))
        for i in range(4)
        for t in (0.25, 0.5, 0.75)
    ]


def near(pixel, colour, tolerance: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, colour))


def test_the_page_reads_an_upload_and_draws_the_boxes(server_url, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    api = httpx.post(
        f"{server_url}/v1/read", files={"image": (SCENE.name, SCENE.read_bytes(), "image/jpeg")}, timeout=60
    ).json()
    assert len(api["lines"]) >= 2  # several boxes to find on the canvas

    browser.get(server_url + "/")
    assert browser.find_element(By.ID, "detector-choice").is_displayed()  # the service has a detector
    browser.find_element(By.ID, "file").send_keys(str(SCENE))
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
    )
    status = browser.find_element(By.ID, "status").text
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", status
    assert f"{len(api['lines'])} line(s) in 800\u00d7600" in status and "server" in status and " ms" in status

    # The listed reads are the API's, in order, with their confidences.
    items = browser.find_elements(By.CSS_SELECTOR, "#reads li")
    assert [item.find_element(By.CLASS_NAME, "text").text for item in items] == [x["text"] for x in api["lines"]]
    for item, line in zip(items, api["lines"]):
        assert f"confidence {line['confidence']:.3f}" in item.text
        assert ("invalid" in item.get_attribute("class").split()) != line["valid"]

    # The canvas holds the image with each polygon stroked in its box colour, where the image itself is not.
    original = cv2.cvtColor(cv2.imread(str(SCENE)), cv2.COLOR_BGR2RGB)
    for line in api["lines"]:
        points = [(x, y) for x, y in edge_points(line["poly"]) if 0 <= x < 800 and 0 <= y < 600]
        assert len(points) >= 8
        drawn = browser.execute_script(_PIXELS, points)
        assert (drawn["width"], drawn["height"]) == (800, 600)
        own = BOX_COLOURS[line["valid"]]
        assert all(any(near(p, c) for c in BOX_COLOURS.values()) for p in drawn["pixels"]), drawn["pixels"]
        assert sum(near(p, own) for p in drawn["pixels"]) >= len(points) - 2  # crossings with other boxes aside
        assert sum(near(original[y, x], own) for x, y in points) == 0  # the colour comes from the drawing
    # Away from every box the canvas shows the image (it was drawn, not just boxes on blank).
    corner = browser.execute_script(_PIXELS, [(5, 595)])["pixels"][0]
    assert all(abs(int(a) - int(b)) <= 40 for a, b in zip(corner, original[595, 5]))
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)
