"""Drive a real JupyterLab in headless Chromium: start a server on 127.0.0.1 with a temporary root, open a
notebook, run all its cells, and hand the Playwright page to a test. Everything is shut down afterwards.

Chromium comes from the system (`apt-get install chromium`, done by `make test` through `tools/browser.sh`); Playwright's own browser
download is not used. A missing browser or Playwright is an error, never a skip: the widgets must be shown
to work in a browser.
"""
from __future__ import annotations
import contextlib, os, shutil, signal, socket, subprocess, time, urllib.request
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
JUPYTER = REPO/".venv"/"bin"/"jupyter"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("CVKIT_TEST_ARTIFACTS", REPO/"test-artifacts"))


def chromium_path() -> str:
    "The system Chromium (fails with instructions if it is not installed)."
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if p := shutil.which(name): return p
    raise RuntimeError("the browser tests need Chromium: `apt-get install -y chromium` (`make test` does this through tools/browser.sh)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def write_notebook(path:Path, cells:list[str]):
    "Write code `cells` as a notebook at `path`."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@contextlib.contextmanager
def jupyter_lab(root:Path, timeout:float=90):
    "A JupyterLab server on 127.0.0.1 serving `root` (no token, isolated settings); yields its base URL."
    port = free_port()
    home = root/".home"; home.mkdir(exist_ok=True)
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline", PYTHONUNBUFFERED="1",
               JUPYTER_CONFIG_DIR=str(home/"config"), JUPYTER_RUNTIME_DIR=str(home/"runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home/"settings"), JUPYTERLAB_WORKSPACES_DIR=str(home/"workspaces"))
    env.pop("PYTHONPATH", None)
    log = open(root/".home"/"jupyter.log", "w")
    proc = subprocess.Popen([str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
                             "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=None",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                             *(["--allow-root"] if os.geteuid() == 0 else [])],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{(root/'.home'/'jupyter.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2).read(); break
            except OSError:
                if time.monotonic() - t0 > timeout: raise RuntimeError(f"jupyter lab did not answer on {url} in {timeout}s")
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


@contextlib.contextmanager
def browser_page(viewport=(1400, 1000)):
    "A headless Chromium page (system Chromium driven by Playwright)."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def open_and_run_all(page, url:str, name:str, timeout_ms:int=120_000):
    "Open notebook `name` in JupyterLab, wait for its kernel, and run all cells from the Run menu."
    page.goto(f"{url}/lab/tree/{name}", timeout=timeout_ms)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
    # JupyterLab may ask which kernel to start: take the one it proposes (the notebook's python3)
    with contextlib.suppress(Exception):
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=5000)
    with contextlib.suppress(Exception):                       # the "Jupyter news?" notification
        page.locator(".jp-Notification-Toast-Close, .jp-toast-button:has-text('No')").first.click(timeout=1000)
    # the kernel is ready when the toolbar's kernel status shows idle
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_ms)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def widget_errors(page) -> list[str]:
    "Texts of widget or cell errors shown on the page (none when everything rendered)."
    errs = []
    for sel, what in ((".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", None),
                      (".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']", "error")):
        for el in page.locator(sel).all():
            t = el.inner_text()
            if what or "Traceback" in t or "Error" in t: errs.append(t[:2000])
    body = page.locator("body").inner_text()
    for marker in ("Error displaying widget", "Failed to load model class", "model not found"):
        if marker in body: errs.append(marker)
    return errs
