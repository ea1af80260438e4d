"""The explainer page in a real browser: headless Chromium (Debian's package) driven by Selenium.

The page is generated for AlexNet at 227 px and for LeNet-5 on a digit, opened from disk
(file://, no server), and checked as a reader would use it: every layer's section is there
with its summary row, images and a unit panel; the console shows no error; a click on a
CONV1 channel map and choices in the unit lists of NORM1 and MAX POOL1 show the step-by-step
arithmetic, whose numbers are compared with numbers this test computes itself -- NumPy loops
over the traced input and the layer's weights, not the page generator's code (a wrong
receptive field, LRN window or pooling window on the page fails here).

.ci/run installs Chromium, ChromeDriver and Selenium, so in CI these tests always run.
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet
import tinynet.models as models
from tinynet.trace import trace
from tinynet.trace.inputs import digit_input, photo_input

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PHOTO = ROOT.parent / "shared" / "data" / "catdog" / "train" / "cat.1.jpg"
# the flags that keep headless Chromium off the (closed) network and quiet as root
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--window-size=1400,1000"]


def _photo(tmp):
    """A photo of the shared data where it is, else a drawn one (the checks are about the math)."""
    if PHOTO.exists():
        return str(PHOTO)
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (300, 260), (90, 120, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 40, 240, 220), fill=(200, 150, 90))
    draw.rectangle((120, 100, 180, 160), fill=(30, 30, 30))
    path = tmp / "drawn.png"
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium not installed: apt-get install chromium chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (.ci/run does)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def alexnet_page(tmp_path_factory):
    """A checkpoint of a (seeded, untrained) AlexNet with classes and colour statistics, explained
    at 227 px by the command line; the test's own trace of the same model on the same input."""
    tmp = tmp_path_factory.mktemp("explain")
    tinynet.manual_seed(0)
    model = models.create("alexnet", num_classes=2)
    statistics = {"mean": np.array([0.49, 0.45, 0.41]), "std": np.array([0.25, 0.24, 0.24])}
    tinynet.save(dict(models.checkpoint_entries(model), classes=["cat", "dog"], statistics=statistics,
                      config={"image_size": 227}), tmp / "best.npz")
    photo = _photo(tmp)
    out = tmp / "page"
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "explain.py"), "--checkpoint", str(tmp / "best.npz"),
                          photo, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr
    print(run.stdout)
    x, _ = photo_input(photo, 227, statistics)
    return {"index": out / "index.html", "model": model.eval(), "x": x, "trace": trace(model, x)}


def _open(driver, path):
    driver.get(path.as_uri())
    driver.get_log("browser")            # start the log afresh for this page
    driver.get(path.as_uri())
    return driver


def _errors(driver):
    logs = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    return logs + [{"message": m} for m in driver.execute_script("return window.tinynetErrors")]


def _numbers(element, name):
    from selenium.webdriver.common.by import By

    return [float(e.text) for e in element.find_elements(By.CSS_SELECTOR, f'.num[data-name="{name}"]')]


def _number(element, name):
    values = _numbers(element, name)
    assert values, f"no number named {name!r} on the panel"
    return values[0]


def _close(shown, expected):
    # the page shows 6 significant digits
    return math.isclose(shown, expected, rel_tol=2e-5, abs_tol=1e-6)


def _section(driver, label):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'section.layer[data-label="{label}"]')


def _choose(driver, label, key):
    """Pick a unit from a layer's list, as a reader does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    section = _section(driver, label)
    select = section.find_element(By.CSS_SELECTOR, "select.unit-select")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", select)
    Select(select).select_by_value(key)
    return section.find_element(By.CSS_SELECTOR, ".unit-panel")


def _click_map(driver, label, channel, y, x):
    """Click a layer's channel map on channel ``channel`` at map position (y, x)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    section = _section(driver, label)
    image = section.find_element(By.CSS_SELECTOR, "img.map")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
    layout = driver.execute_script(
        "return DATA.layers.find(l => l.label === arguments[0]).layout", label)
    natural = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    row, col = divmod(channel, layout["cols"])
    px = layout["pad"] + col * (layout["tile_w"] + layout["pad"]) + (x + 0.5) * layout["scale"]
    py = layout["pad"] + row * (layout["tile_h"] + layout["pad"]) + (y + 0.5) * layout["scale"]
    size = image.size
    dx = px * size["width"] / natural[0] - size["width"] / 2
    dy = py * size["height"] / natural[1] - size["height"] / 2
    ActionChains(driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform()
    return section.find_element(By.CSS_SELECTOR, ".unit-panel")


def _unit(panel):
    return tuple(int(panel.get_attribute(a)) for a in ("data-channel", "data-y", "data-x"))


def test_every_layer_renders_without_console_errors(browser, alexnet_page):
    from selenium.webdriver.common.by import By

    driver = _open(browser, alexnet_page["index"])
    t = alexnet_page["trace"]
    sections = driver.find_elements(By.CSS_SELECTOR, "section.layer[data-index]")
    assert [s.get_attribute("data-label") for s in sections] == [r.label for r in t]
    for section, record in zip(sections, t):
        assert record.row.text in section.find_element(By.CSS_SELECTOR, ".row-text").text
        if record.row.size_formula:
            assert section.find_element(By.CSS_SELECTOR, ".size-formula").text == record.row.size_formula
        for image in section.find_elements(By.TAG_NAME, "img"):
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image), \
                (record.label, image.get_attribute("src"))
        assert section.find_elements(By.CSS_SELECTOR, ".unit-panel .step"), record.label
    conv1 = _section(driver, "CONV1")
    assert conv1.find_element(By.CSS_SELECTOR, ".size-formula").text == "(227-11)/4+1 = 55"
    assert conv1.find_element(By.CSS_SELECTOR, ".params-formula").text == "3*11*11*96+96 = 34,944"
    # the photo, the saliency map and the conv1 filters are drawn
    for selector in ("#photo", "#saliency", "#filters"):
        element = driver.find_element(By.CSS_SELECTOR, selector)
        assert driver.execute_script("return arguments[0].naturalWidth > 0", element), selector
    # class probabilities: the softmax of the logits, computed here
    z = t.logits[0].astype(np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    shown = _numbers(driver.find_element(By.ID, "probabilities"), "probability")
    assert all(_close(a, b) for a, b in zip(shown, sorted(p, reverse=True)))
    assert "cat" in driver.find_element(By.ID, "probabilities").text
    assert _errors(driver) == []
    # offline: the page names nothing on a network
    text = alexnet_page["index"].read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text


def test_a_conv1_unit_picked_on_its_map_shows_its_dot_product(browser, alexnet_page):
    driver = _open(browser, alexnet_page["index"])
    model, x = alexnet_page["model"], alexnet_page["x"]
    panel = _click_map(driver, "CONV1", channel=5, y=26, x=29)
    c, y, x_ = _unit(panel)
    assert (c, y, x_) == (5, 27, 27)                  # the nearest explained position of the 3x3 grid
    weight = model.features.conv1.weight.numpy().astype(np.float64)
    bias = float(model.features.conv1.bias.numpy()[c])
    # the im2col row and the dot product, by loops over the 3x11x11 window at stride 4
    patch, total = [], 0.0
    for ch in range(3):
        for i in range(11):
            for j in range(11):
                value = float(x[0, ch, 4 * y + i, 4 * x_ + j])
                patch.append(value)
                total += value * weight[c, ch, i, j]
    shown_patch = _numbers(panel, "patch")
    assert len(shown_patch) == 363
    assert all(_close(a, b) for a, b in zip(shown_patch, patch))
    assert all(_close(a, b) for a, b in zip(_numbers(panel, "filter"), weight[c].ravel()))
    assert _close(_number(panel, "dot"), total)
    assert _close(_number(panel, "bias"), bias)
    assert _close(_number(panel, "sum"), total + bias)
    assert _close(_number(panel, "value"), total + bias)
    # its receptive field on the photo: rows 4y .. 4y+10, columns 4x .. 4x+10
    expected = {"rf_top": 4 * y, "rf_left": 4 * x_, "rf_bottom": 4 * y + 10, "rf_right": 4 * x_ + 10}
    for name, value in expected.items():
        assert _number(panel, name) == value
        assert _number(driver.find_element("id", "rf-text"), name) == value
    # backward: the bias gets the arriving gradient, the ReLU above gates it
    g = _number(panel, "grad_out")
    assert _close(_number(panel, "grad_bias_share"), g)
    relu = _choose(driver, "RELU1", f"{c}:{y}:{x_}")
    assert _close(_number(relu, "x"), total + bias)
    assert _close(_number(relu, "value"), max(0.0, total + bias))
    assert _close(_number(relu, "grad_in"), _number(relu, "grad_out") * (1.0 if total + bias > 0 else 0.0))
    assert _errors(driver) == []


def test_an_lrn_unit_shows_its_window_of_channels_and_the_division(browser, alexnet_page):
    driver = _open(browser, alexnet_page["index"])
    a = alexnet_page["trace"]["NORM1"].input[0].astype(np.float64)      # what NORM1 received
    for c, y, x in ((1, 13, 13), (7, 0, 26)):                # channel 1: the window is cut at channel 0
        panel = _choose(driver, "NORM1", f"{c}:{y}:{x}")
        assert _unit(panel) == (c, y, x)
        squares = 0.0
        for j in range(c - 2, c + 3):                      # n = 5 channels, centred
            if 0 <= j < a.shape[0]:
                squares += a[j, y, x] ** 2
        scale = 2.0 + 1e-4 * squares                       # k = 2, alpha = 1e-4 on the plain sum (the paper)
        power = scale ** 0.75
        assert _number(panel, "low") == max(0, c - 2) and _number(panel, "high") == c + 2
        assert _close(_number(panel, "sum_squares"), squares)
        assert _close(_number(panel, "scale"), scale)
        assert _close(_number(panel, "power"), power)
        assert _close(_number(panel, "value"), a[c, y, x] / power)
        assert _close(_number(panel, "result"), a[c, y, x] / power)
    assert _errors(driver) == []


def test_a_max_pool_unit_shows_its_window_and_routes_the_gradient_to_the_argmax(browser, alexnet_page):
    driver = _open(browser, alexnet_page["index"])
    t = alexnet_page["trace"]
    a = t["MAX POOL1"].input[0].astype(np.float64)
    c, y, x = 3, 13, 26
    panel = _choose(driver, "MAX POOL1", f"{c}:{y}:{x}")
    window, best, where = [], -np.inf, None
    for i in range(3):                                    # 3x3 at stride 2
        for j in range(3):
            value = a[c, 2 * y + i, 2 * x + j]
            window.append(value)
            if value > best:
                best, where = value, (2 * y + i, 2 * x + j)
    assert all(_close(s, v) for s, v in zip(_numbers(panel, "window"), window))
    assert _close(_number(panel, "max"), best) and _close(_number(panel, "value"), best)
    assert (_number(panel, "argmax_row"), _number(panel, "argmax_col")) == where
    assert (_number(panel, "top"), _number(panel, "left")) == (2 * y, 2 * x)
    # receptive field of MAX POOL1 (y, x): rows 8y .. 8y+18 of the photo, clipped to 0..226
    assert (_number(panel, "rf_top"), _number(panel, "rf_bottom")) == (8 * y, min(8 * y + 18, 226))
    assert (_number(panel, "rf_left"), _number(panel, "rf_right")) == (8 * x, min(8 * x + 18, 226))
    # the gradient arriving goes to the argmax
    assert _close(_number(panel, "grad_out"), float(t["MAX POOL1"].grad_output[0, c, y, x]))
    assert _errors(driver) == []


def test_lenet5_on_a_digit(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from tinynet.trace.page import write_page

    tinynet.manual_seed(1)
    model = models.create("lenet5", num_classes=10).eval()
    digit = np.zeros((28, 28), dtype=np.uint8)
    mnist = ROOT.parent / "shared" / "data" / "mnist"
    if mnist.exists():
        from tinynet.data.mnist import load_mnist

        digit = load_mnist(str(mnist), "test")[0][0]
    else:
        digit[4:24, 12:16] = 255                          # a drawn 1
    x, shown = digit_input(digit)
    t = trace(model, x)
    result = write_page(t, str(tmp_path / "lenet"), photo_rgb=shown, classes=[str(d) for d in range(10)])
    driver = _open(browser, Path(result["path"]))
    assert len(driver.find_elements(By.CSS_SELECTOR, "section.layer[data-index]")) == len(t)
    panel = _click_map(driver, "C1", channel=2, y=27, x=1)
    c, y, x_ = _unit(panel)
    assert (c, y, x_) == (2, 27, 0)
    w = model.features.c1.weight.numpy().astype(np.float64)
    total = sum(float(x[0, 0, y + i, x_ + j]) * w[c, 0, i, j] for i in range(5) for j in range(5))
    total += float(model.features.c1.bias.numpy()[c])
    assert _close(_number(panel, "value"), total)
    assert (_number(panel, "rf_top"), _number(panel, "rf_left"), _number(panel, "rf_bottom"),
            _number(panel, "rf_right")) == (y, x_, y + 4, x_ + 4)
    assert _errors(driver) == []
