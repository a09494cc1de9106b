"""The widgets in a real JupyterLab, in a real (headless Chromium) browser.

A notebook that trains a small model on the digits and shows `AugmentExplorer` and `InterpretationDashboard`
is opened in JupyterLab and run from the Run menu, as a person would. The test then checks what the person
would see: the widgets render (slider and image elements, no widget error), moving the rotation slider with
the keyboard changes the preview image and the code shown, and clicking a confusion-matrix cell shows that
cell's images. Screenshots are saved under `test-artifacts/` (or `$CVKIT_TEST_ARTIFACTS`).
"""
from __future__ import annotations
import re
from browser import ARTIFACTS, browser_page, jupyter_lab, open_and_run_all, widget_errors, write_notebook

CELLS = [
    """from cvkit.datasets import digits
from cvkit.data.loaders import image_dataloaders
from cvkit.train.learner import cv_learner
from cvkit.augment.explorer import AugmentExplorer
from cvkit.eval.dashboard import InterpretationDashboard
dls = image_dataloaders(digits(), size=32, flip=False, seed=0)
learn = cv_learner(dls, "simple_cnn", plain_logging=True, channels=(8, 16), hidden=32)
learn.fit_one_cycle(1, 1e-2)""",
    "explorer = AugmentExplorer(dls, n=4)\nexplorer",
    "dashboard = InterpretationDashboard(learn)\ndashboard",
]


def decoded(page, img, timeout:float=30_000):
    "Wait until the browser has decoded `img`'s current picture (a new src is decoded asynchronously); its width."
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=timeout)
    return img.evaluate("img => img.naturalWidth")


def test_widgets_in_jupyterlab(tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path/"lab"; root.mkdir()
    write_notebook(root/"widgets.ipynb", CELLS)
    with jupyter_lab(root) as url, browser_page() as page:
        try:
            open_and_run_all(page, url, "widgets.ipynb")
            page.wait_for_selector(".cvkit-augment-explorer", timeout=240_000)
            page.wait_for_selector(".cvkit-dashboard", timeout=120_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            assert widget_errors(page) == []

            # the explorer: a rotation slider, a preview image, the code that reproduces the settings
            explorer = page.locator(".cvkit-augment-explorer")
            handle = explorer.locator(".cvkit-aug-rotation .noUi-handle")
            assert handle.count() == 1
            preview = explorer.locator("img.cvkit-aug-preview")
            assert preview.count() == 1 and preview.is_visible()
            assert decoded(page, preview) > 0           # a real, decoded picture
            code = explorer.locator(".cvkit-aug-code textarea")
            src0, code0 = preview.get_attribute("src"), code.input_value()
            assert "image_dataloaders(digits(), size=32" in code0 and "digits-32px" not in code0   # what you would type, not the cache folder
            handle.scroll_into_view_if_needed()
            handle.focus()
            for _ in range(5): page.keyboard.press("ArrowRight")
            page.wait_for_function("([el, s]) => el.src !== s", arg=[preview.element_handle(), src0], timeout=30_000)
            page.wait_for_function("([el, c]) => el.value !== c", arg=[code.element_handle(), code0], timeout=30_000)
            assert decoded(page, preview) > 0
            page.screenshot(path=str(ARTIFACTS/"browser-augment-explorer.png"))

            # the dashboard: open the confusion matrix, click a diagonal cell, its images appear
            dash = page.locator(".cvkit-dashboard")
            dash.locator(".lm-TabBar-tab", has_text="Confusion").first.click()
            cells = dash.locator(".cvkit-cm-cell")
            cells.first.wait_for(state="visible", timeout=30_000)
            n_classes = 10
            assert cells.count() == n_classes*n_classes
            cell = cells.first                                               # true 0 -> predicted 0
            count = int(re.sub(r"\D", "", cell.inner_text()))
            assert count > 0
            cell.scroll_into_view_if_needed()
            cell.click()
            images = dash.locator(".cvkit-cm-images img")
            images.first.wait_for(state="visible", timeout=30_000)
            assert 0 < images.count() <= count
            assert decoded(page, images.first) > 0
            assert widget_errors(page) == []
            images.first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS/"browser-dashboard.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS/"browser-failure.png"))
            raise
