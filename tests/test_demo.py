"""The web demo (deepcut/demo.py): its upload checks and request handler directly, then the real
thing in a real browser: `python -m deepcut.demo` on a free localhost port, Debian's chromium
driven by selenium uploads a photo, presses the button and must get a result image of the photo's
size, and a message (not a stack trace) for a file that is not an image. The browser may talk to
this machine only; every http(s)/ws request it made is checked for that.

The browser test skips, saying why, without gradio (the `[demo]` extra), selenium, or
chromium/chromedriver (`apt-get install chromium chromium-driver`; .ci/run installs them).
DEEPCUT_DEMO_SCREENSHOT=<file.jpg|png> keeps its screenshot, at most 1100 px wide (the README's
picture examples/demo.jpg is made so).
"""
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepcut import demo
from deepcut.datasets import Demo

PHOTOS = {e.id: e.image for e in Demo().entries}


def photo_file(tmp_path, mode, size=(64, 48), name=None):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(array, "RGBA").convert(mode)
    path = tmp_path / (name or f"photo_{mode}.png")
    image.save(path)
    return path


@pytest.mark.parametrize("mode, note", [("RGB", None), ("L", "grey photo"), ("RGBA", "transparency dropped"),
                                        ("P", "converted from P"), ("I;16", "grey photo")])
def test_read_photo_converts_every_mode_to_rgb_and_says_so(tmp_path, mode, note):
    image, notes = demo.read_photo(photo_file(tmp_path, mode))
    assert image.mode == "RGB" and image.size == (64, 48)
    assert (note is None and notes == []) or (len(notes) == 1 and note in notes[0])


def test_read_photo_refuses_what_it_cannot_use_with_a_message(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all")
    with pytest.raises(demo.PhotoError, match="notes.png is not an image that can be read"):
        demo.read_photo(text)
    huge = tmp_path / "huge.png"
    Image.new("1", (10_000, 6_000)).save(huge)  # 60 megapixels, a few kB on disk
    with pytest.raises(demo.PhotoError, match="10000 x 6000 = 60 megapixels; the demo takes up to 50"):
        demo.read_photo(huge)
    with pytest.raises(demo.PhotoError, match="at least 14 pixels"):
        demo.read_photo(photo_file(tmp_path, "RGB", size=(200, 8)))
    whole = photo_file(tmp_path, "RGB", size=(300, 200), name="cut.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(demo.PhotoError, match="cut.png could not be decoded"):
        demo.read_photo(cut)


def test_settings_pass_loss_k_and_mode_to_deepcut_only():
    assert demo.settings("deepcut", "cc", 5, "parts", True) == (
        "deepcut", (("loss", "cc"), ("mode", "parts")), ("postprocess.bilateral=true", "loss.k=5"))
    assert demo.settings("deepcut", "ncut", 2, "single", False)[2] == ("postprocess.bilateral=false", "loss.k=2")
    assert demo.settings("tokencut", "cc", 5, "parts", False) == demo.settings("tokencut", "ncut", 2, "single", False)
    assert demo.settings("kmeans", "ncut", 3, "single", False)[2] == ("postprocess.bilateral=false", "method.k=3")
    assert demo.settings("maskcut", "ncut", 2, "single", False, 3)[2] == ("postprocess.bilateral=false",
                                                                          "postprocess.instances=3")
    with pytest.raises(demo.PhotoError, match="not one of"):
        demo.settings("sam", "ncut", 2, "single", False)


def test_segment_shows_instances_each_in_its_colour():
    """Issue 26: with instances, the overlay tints and boxes every proposal and the status lists their boxes."""
    segmenters = demo.Segmenters("tiny_random")
    photo = str(PHOTOS["coffee"])
    plain, _, _, _ = demo.segment(segmenters, photo, "kmeans", "ncut", 4, "single", False)
    overlay, _, _, status = demo.segment(segmenters, photo, "kmeans", "ncut", 4, "single", False, 5)
    line = status.split("**Instances** ")[1].split("\n")[0]
    n = int(line.split()[0])
    assert 1 <= n <= 5 and line.count(";") == n - 1  # one box per instance
    assert overlay.size == plain.size and overlay.tobytes() != plain.tobytes()


def test_segment_returns_pictures_at_the_photo_size_and_caches_the_segmenter(tmp_path):
    segmenters = demo.Segmenters("tiny_random")
    photo = PHOTOS["coffee"]
    width, height = Image.open(photo).size
    overlay, labels, maps, status = demo.segment(segmenters, str(photo), "deepcut", "ncut", 3, "single", False)
    assert overlay.size == (width, height) and labels.height == height
    captions = [caption.split(":")[0] for _, caption in maps]
    n_clusters = int(status.split("**Clusters** ")[1].split()[0])
    assert captions == [f"S_{i}" for i in range(n_clusters)] + ["cosine similarity of the outlined patch to every patch"]
    assert all(m.size == (width, height) for m, _ in maps)
    assert "**Time**" in status and "**Box**" in status and "loading the model" in status
    again = demo.segment(segmenters, str(photo), "deepcut", "ncut", 3, "single", False)[3]
    assert "loading the model" not in again  # the second request reuses the cached segmenter
    assert segmenters.get.cache_info().misses == 1
    _, _, maps, status = demo.segment(segmenters, str(photo), "dsm", "cc", 7, "parts", False)
    assert [c.split(" ")[1] for _, c in maps][0] == "eigenvector" and "shape DeepCut only" in status


def test_segment_runs_every_method_and_setting_the_page_offers():
    segmenters = demo.Segmenters("tiny_random", size=2)
    photo = str(PHOTOS["rocket"])
    width, height = Image.open(photo).size
    for args in [(m, "ncut", 2, "single", False) for m in demo.method_choices() if m != "deepcut"] + [
            ("deepcut", "cc", 10, "single", False), ("deepcut", "ncut", 3, "parts", True)]:
        overlay, labels, maps, status = demo.segment(segmenters, photo, *args)
        assert overlay is not None and overlay.size == (width, height), (args, status)
        assert status.startswith("**Time**") and maps, (args, status)


def test_segment_turns_every_failure_into_a_message(tmp_path):
    segmenters = demo.Segmenters("tiny_random")
    text = tmp_path / "x.jpg"
    text.write_bytes(b"\x00" * 100)
    out = demo.segment(segmenters, str(text), "deepcut", "ncut", 2, "single", False)
    assert out[:3] == (None, None, []) and out[3].startswith("**Cannot use this file.** x.jpg is not an image")
    assert "Upload a photo" in demo.segment(segmenters, None, "deepcut", "ncut", 2, "single", False)[3]
    broken = demo.Segmenters("no_such_backbone")
    status = demo.segment(broken, str(PHOTOS["coffee"]), "deepcut", "ncut", 2, "single", False)[3]
    assert status.startswith("**Segmentation failed:** ") and "no_such_backbone" in status
    assert "Traceback" not in status


# ---------------------------------------------------------------- in a real browser

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
BROWSER_MISSING = (
    "gradio is not installed (the [demo] extra)" if importlib.util.find_spec("gradio") is None else
    "selenium is not installed (the [dev] extra)" if importlib.util.find_spec("selenium") is None else
    "no chromium / chromedriver on PATH (apt-get install chromium chromium-driver)" if not (CHROMIUM and CHROMEDRIVER)
    else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def demo_server(log: Path):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "deepcut.demo", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, f"the demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the demo did not listen on port {port} within 120 s:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="deepcut-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,1500",
                 # Only this machine resolves: a request anywhere else fails (and is seen in the log).
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.add(message["params"].get("request", {}).get("url") or message["params"].get("url"))
    return urls


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.skipif(BROWSER_MISSING is not None, reason=f"browser test skipped: {BROWSER_MISSING}")
def test_demo_in_a_real_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = PHOTOS["chelsea"]
    size = list(Image.open(photo).size)
    log = tmp_path / "demo.log"
    with demo_server(log) as url, browser() as driver:
        def result(driver):
            images = driver.find_elements(By.CSS_SELECTOR, "#overlay img")
            return images and driver.execute_script(
                "const i = arguments[0]; return i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null",
                images[0])

        def status(driver):
            return driver.find_element(By.CSS_SELECTOR, "#status").text.strip()

        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(photo))
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))
        driver.find_element(By.CSS_SELECTOR, "#run").click()
        try:
            shown = WebDriverWait(driver, 300).until(result)
        finally:
            driver.save_screenshot(str(tmp_path / "demo.png"))
        assert shown == size, f"result image {shown} is not the photo's size {size}"
        text = status(driver)
        assert "Time" in text and "Box" in text and "Clusters" in text, text
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#maps img")) >= 3)
        time.sleep(1)  # let the gallery's images finish drawing
        driver.save_screenshot(str(tmp_path / "demo.png"))
        if os.environ.get("DEEPCUT_DEMO_SCREENSHOT"):  # .jpg: a small copy for the README
            bottom = driver.find_element(By.CSS_SELECTOR, "#maps").rect
            shot = Image.open(tmp_path / "demo.png").convert("RGB")
            shot = shot.crop((0, 0, shot.width, min(shot.height, int(bottom["y"] + bottom["height"]) + 20)))
            shot.thumbnail((1100, 1100))
            shot.save(os.environ["DEEPCUT_DEMO_SCREENSHOT"], quality=85)

        # A file that is not an image: a message on the page, not a stack trace.
        fake = tmp_path / "holiday.png"
        fake.write_text("this is a text file")
        for clear in driver.find_elements(By.CSS_SELECTOR, "#photo button[aria-label='Clear']"):
            clear.click()  # back to the upload field
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(fake))
        time.sleep(1)
        driver.find_element(By.CSS_SELECTOR, "#run").click()
        message = WebDriverWait(driver, 60).until(lambda d: "Cannot use this file" in status(d) and status(d))
        assert "holiday.png is not an image that can be read" in message and "Traceback" not in message

        outside = sorted(u for u in requested_urls(driver)
                         if u.split(":")[0] in ("http", "https", "ws", "wss") and not u.split("//")[1].startswith("127.0.0.1"))
        assert not outside, f"the page made requests beyond this machine: {outside[:5]}"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.mark.real
def test_parts_across_photos_tint_one_collection():
    """Several uploads as one collection with the parts recipe: one grid picture of all of them,
    the parts found listed; fewer than two photos or a broken one is a message."""
    segmenters = demo.Segmenters()
    photos = [str(PHOTOS[name]) for name in ("chelsea", "coffee", "astronaut")]
    picture, status = demo.collection_parts(segmenters, [{"path": p} for p in photos], 3)
    assert picture is not None and picture.width > picture.height  # three photos side by side
    assert "**Parts** " in status and "for 3 photos" in status
    assert demo.collection_parts(segmenters, photos[:1], 3)[1].startswith("**Upload at least two photos**")
    assert demo.collection_parts(segmenters, [photos[0], __file__], 3)[1].startswith("**Cannot use this file.**")
