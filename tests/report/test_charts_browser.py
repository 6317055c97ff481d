"""report.html's figures render whole in a real browser (headless Chromium, marked `browser`).

Two screenshots: the page as written (every figure present and drawn), and every figure's embedded
SVG cut out of the page and laid on a magenta background at its natural size, so that each figure's
extent in the image is known: inside it the figure must be drawn, and the rim along its edge must be
blank (white): a legend or label pushed past the figure's edge would be cut off there.
"""

from __future__ import annotations

import base64
import math
import re
import subprocess
from pathlib import Path

import pytest
from chart_reports import edge_report

from auditq.report.charts import RETENTION_SERIES, ROLE_COLORS
from auditq.report.html import HtmlWriter

CHROMIUM = Path("/usr/bin/chromium")
MAGENTA = (255, 0, 255)
FIGURES = ("fig-verbmem_forget", "fig-knowmem_forget", "fig-retention", "fig-utility", "fig-roc")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


def _screenshot(page: Path, png: Path, width: int, height: int):
    from PIL import Image

    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--no-first-run", "--mute-audio", "--force-device-scale-factor=1",
                    f"--user-data-dir={page.parent / 'profile'}", f"--window-size={width},{height}",
                    f"--screenshot={png}", page.resolve().as_uri()], check=True, timeout=180, capture_output=True)
    return Image.open(png).convert("RGB")


def _near(pixels, rgb, tol: int = 8):
    import numpy as np

    return (np.abs(pixels.astype(np.int16) - np.asarray(rgb, dtype=np.int16)).max(axis=-1) <= tol)


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _embedded(page: str) -> dict[str, str]:
    """figure id -> the SVG document embedded in it."""
    found = re.findall(r'<figure id="([^"]+)"><img alt="[^"]*" src="data:image/svg\+xml;base64,([^"]+)"', page)
    return {fig_id: base64.b64decode(data).decode("utf-8") for fig_id, data in found}


def _size_px(svg: str) -> tuple[int, int]:
    """The SVG's width and height in CSS pixels (matplotlib writes points: 96 px per 72 pt)."""
    width, height = (float(re.search(rf'<svg[^>]*\s{attr}="([\d.]+)pt"', svg).group(1)) for attr in ("width", "height"))
    return math.ceil(width * 96 / 72), math.ceil(height * 96 / 72)


def test_report_page_shows_every_figure(tmp_path):
    page = HtmlWriter().render(edge_report("floor", retain_knowmem=True))
    assert list(_embedded(page)) == list(FIGURES)
    (tmp_path / "report.html").write_text(page, encoding="utf-8")
    image = _screenshot(tmp_path / "report.html", tmp_path / "page.png", 1280, 5200)
    import numpy as np

    pixels = np.asarray(image)
    for color in (ROLE_COLORS["base"], ROLE_COLORS["unlearned"], ROLE_COLORS["retrain"],
                  RETENTION_SERIES["forget_retention.knowmem"][0]):  # the bars, curves and the KnowMem points
        assert _near(pixels, _rgb(color)).sum() > 200, color


def test_each_figure_is_drawn_whole_within_its_extent(tmp_path):
    import numpy as np

    svgs = _embedded(HtmlWriter().render(edge_report("floor", retain_knowmem=True)))
    gap, top, boxes, imgs = 40, 40, {}, []
    for fig_id, svg in svgs.items():
        (tmp_path / f"{fig_id}.svg").write_text(svg, encoding="utf-8")
        width, height = _size_px(svg)
        boxes[fig_id] = (gap, top, width, height)
        imgs.append(f'<img src="{fig_id}.svg" style="position:absolute;left:{gap}px;top:{top}px;'
                    f'width:{width}px;height:{height}px">')
        top += height + gap
    probe = tmp_path / "figures.html"
    probe.write_text(f'<!DOCTYPE html><html><body style="margin:0;background:#ff00ff">{"".join(imgs)}</body></html>',
                     encoding="utf-8")
    page_width = max(w for _, _, w, _ in boxes.values()) + 2 * gap
    pixels = np.asarray(_screenshot(probe, tmp_path / "figures.png", page_width, top))
    assert pixels.shape[:2] == (top, page_width)
    for fig_id, (x, y, w, h) in boxes.items():
        # one pixel in from the extent: its outermost pixels blend the white figure with the page (the size
        # in points is not a whole number of pixels)
        inside = pixels[y + 1:y + h - 1, x + 1:x + w - 1]
        assert not _near(inside, MAGENTA, tol=40).any(), f"{fig_id} does not cover its extent"
        assert (inside.min(axis=-1) < 100).sum() > 500, f"{fig_id} is blank"
        rim = np.concatenate([inside[:3].reshape(-1, 3), inside[-3:].reshape(-1, 3),
                              inside[:, :3].reshape(-1, 3), inside[:, -3:].reshape(-1, 3)])
        assert rim.min() >= 245, f"{fig_id}: something is drawn up to the figure's edge (cut off)"
        assert _near(pixels[y - 2:y, x:x + w], MAGENTA).all()  # and the figure ends where its extent says
    retention = pixels[boxes["fig-retention"][1]:, :][:boxes["fig-retention"][3]]
    assert _near(retention, _rgb(RETENTION_SERIES["forget_retention.verbmem"][0])).sum() > 100
