"""The headless-Chromium harness (the `chromium` fixture in conftest.py) can fail: each check sees a bad page."""

from __future__ import annotations

import base64
from io import BytesIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def write_page(directory: Path, body: str, title: str = "harness") -> Path:
    path = directory / "page.html"
    path.write_text(f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
                    f"<body>{body}</body></html>\n", encoding="utf-8")
    return path


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def white_png() -> bytes:
    buf = BytesIO()
    mpimg.imsave(buf, np.ones((120, 160, 3)), format="png")
    return buf.getvalue()


def line_plot_png() -> bytes:
    fig, ax = plt.subplots(figsize=(3, 2), dpi=80)
    x = np.linspace(0, 6, 200)
    ax.plot(x, np.sin(x))
    buf = BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_console_error_is_reported(chromium, tmp_path):
    page = chromium(write_page(tmp_path, '<p>hello</p><script>console.error("boom")</script>'))
    assert any("boom" in message for message in page.console_errors), page.console_errors
    assert page.script_elements == 1


def test_uncaught_exception_is_reported(chromium, tmp_path):
    page = chromium(write_page(tmp_path, '<script>throw new Error("kaboom")</script>'))
    assert any("kaboom" in message for message in page.console_errors), page.console_errors


def test_clean_page_has_no_console_errors(chromium, tmp_path):
    page = chromium(write_page(tmp_path, "<h1>Report</h1><p>all fine</p>", title="Clean"))
    assert page.console_errors == []
    assert page.title == "Clean"
    assert "all fine" in page.body_text
    assert page.script_elements == 0
    assert page.screenshot_png.startswith(b"\x89PNG")


def test_blank_and_plotted_images(chromium, tmp_path):
    body = (f'<img alt="white" src="{data_uri(white_png())}">\n'
            f'<img alt="plot" src="{data_uri(line_plot_png())}">\n'
            '<img alt="broken" src="data:image/png;base64,bm90IGEgcG5n">')
    page = chromium(write_page(tmp_path, body))
    white, plot, broken = page.images
    assert (white.alt, white.natural_width, white.natural_height, white.complete) == ("white", 160, 120, True)
    assert not white.nonblank
    assert (plot.alt, plot.natural_width, plot.natural_height, plot.complete) == ("plot", 240, 160, True)
    assert plot.nonblank
    assert (broken.alt, broken.complete, broken.nonblank) == ("broken", False, False)


def test_escaped_markup_stays_text(chromium, tmp_path):
    page = chromium(write_page(tmp_path, f"<p>{XSS_ESCAPED}</p>", title=XSS_ESCAPED))
    assert page.title == XSS
    assert XSS in page.body_text
    assert page.script_elements == 0
    assert page.console_errors == []
