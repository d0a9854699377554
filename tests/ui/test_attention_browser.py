"""JupyterLab in a real browser: run notebooks/attention_maps.ipynb and drive AttentionExplorer.

JupyterLab runs on 127.0.0.1 with a token and isolated Jupyter/IPython/matplotlib folders; headless Chromium (the
Debian package, installed by ``tools/install_browser.sh``) is driven by Playwright through ``executable_path``. The
test runs all cells from the menu, moves the head and threshold sliders with the keyboard, checks that the widget's
picture changed after each move (browser -> kernel -> browser), saves a screenshot under the test's temporary folder
and a copy under ``runs/ui/``, and stops the server by its process id.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "attention_maps.ipynb"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = pytest.mark.ui


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM by pid (JupyterLab shuts its kernels down), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


_IMAGE_DIGEST_JS = """async (img) => {
    const resp = await fetch(img.src);
    const bytes = new Uint8Array(await resp.arrayBuffer());
    let h = 2166136261;
    for (const b of bytes) { h ^= b; h = Math.imul(h, 16777619) >>> 0; }
    return img.src + '|' + bytes.length + '|' + h;
}"""


def _picture_digest(image_locator) -> str:
    return image_locator.evaluate(_IMAGE_DIGEST_JS)


def _wait_changed(image_locator, before: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _picture_digest(image_locator)
        if now.split("|", 1)[1] != before.split("|", 1)[1]:
            return now
        time.sleep(0.25)
    raise AssertionError(f"the widget picture did not change within {timeout:.0f} s")


def test_attention_explorer_in_jupyterlab(tmp_path: Path, isolated_home: Path):
    chromium = shutil.which("chromium")
    if not chromium:
        reason = (
            "no 'chromium' on PATH: install it (bash tools/install_browser.sh, which make test runs) to run this test"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}; CI requires the browser tests")
        pytest.skip(f"{reason} (skipped outside CI; CI=true makes it a failure)")
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    token = uuid.uuid4().hex
    port = _free_port()
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TQDM_DISABLE="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("MPLBACKEND", None)  # the kernel uses the inline backend
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ip", "127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    screenshot = tmp_path / "attention_explorer.png"
    with open(log, "w") as log_file:
        server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/api/status?token={token}", server, log)
        workspace = f"attention-{uuid.uuid4().hex[:8]}"
        url = f"{base}/lab/workspaces/{workspace}/tree/{NOTEBOOK.name}?reset&token={token}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, timeout=90_000)
                panel = page.locator(PANEL)
                expect(panel).to_have_count(1, timeout=90_000)
                expect(page.locator(".jp-StatusBar-Widget", has_text="Idle").first).to_be_visible(timeout=90_000)

                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.locator("li.lm-Menu-item", has_text="Run All Cells").first.click()

                explorer = panel.locator(".dino-attention-explorer")
                expect(explorer).to_have_count(1, timeout=180_000)
                image = explorer.locator(".widget-image")
                expect(image).to_have_attribute("src", re.compile("^blob:"), timeout=60_000)
                errors = panel.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
                assert errors.count() == 0, errors.first.inner_text()
                status = explorer.locator(".widget-label").last
                expect(status).to_contain_text("mean", timeout=30_000)

                before = _picture_digest(image)
                head = explorer.locator(".widget-slider", has_text="head").first
                head.locator(".noUi-handle").focus()
                page.keyboard.press("ArrowRight")
                after_head = _wait_changed(image, before)
                expect(status).to_contain_text("head 0", timeout=30_000)

                threshold = explorer.locator(".widget-slider", has_text="threshold").first
                threshold.locator(".noUi-handle").focus()
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
                after_threshold = _wait_changed(image, after_head)
                expect(status).to_contain_text("threshold 0.70", timeout=30_000)
                assert len({before, after_head, after_threshold}) == 3
                assert "forward passes: 1" in status.inner_text()  # sliders re-render from the cache

                news = page.locator(".jp-toast-button", has_text="No")  # "get notified about news?" toast
                if news.count():
                    news.first.click()
                    page.locator(".jp-toast-button").first.wait_for(state="detached", timeout=10_000)
                explorer.scroll_into_view_if_needed()
                page.screenshot(path=str(screenshot))
            finally:
                browser.close()
    finally:
        _stop(server)
    assert server.returncode is not None
    assert screenshot.stat().st_size > 10_000
    copy = REPO / "runs" / "ui" / screenshot.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, copy)
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(screenshot.read_bytes()).digest()
