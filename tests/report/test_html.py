"""report.html: one self-contained file with the verdict table and the paper's plots; it really
renders in a browser (headless Chromium screenshot, marked `browser`)."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

from auditq.report.html import ROLE_COLORS, HtmlWriter
from auditq.report.json_writer import JsonWriter, report_from_dict

CHROMIUM = Path("/usr/bin/chromium")


def _svgs(page: str) -> list[str]:
    return [base64.b64decode(b).decode("utf-8") for b in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)]


def test_self_contained_with_every_plot(synthetic_report):
    page = HtmlWriter().render(synthetic_report)
    assert page.startswith("<!DOCTYPE html>")
    # nothing loaded from anywhere: no scripts, no stylesheets, no remote sources
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|file:)""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    for fig in ("fig-verbmem_forget", "fig-knowmem_forget", "fig-retention", "fig-utility", "fig-roc"):
        assert f'id="{fig}"' in page
    svgs = _svgs(page)
    assert len(svgs) == 5 and all("<svg" in s for s in svgs)
    roc = svgs[-1]
    assert not any(re.search(r"""href\s*=\s*["'](https?:|//)""", s) for s in svgs)  # namespaces only, no links
    assert ROLE_COLORS["unlearned"] in roc and ROLE_COLORS["retrain"] in roc
    # verdict matrix with every verdict, escaped text
    for verdict in ("PASS", "FAIL", "INCONCLUSIVE", "UNKNOWN", "WAIVED"):
        assert f">{verdict}" in page
    assert "a &lt;note&gt; &amp; more" in page and "<note>" not in page
    assert "tracked in TICKET-7" in page and "unmatched" in page


def test_deterministic_and_re_renderable_from_json(synthetic_report):
    import json

    first = HtmlWriter().render(synthetic_report)

    again = report_from_dict(json.loads(JsonWriter().render(synthetic_report)))
    assert again.formats[1].roles["unlearned"].mia["mink"].roc_fpr == (0.0, 0.0, 0.25, 0.5, 1.0)
    assert HtmlWriter().render(again) == first  # same bytes from a different object: deterministic


def test_old_reports_without_plot_data_still_render(synthetic_report):
    import json

    data = json.loads(JsonWriter().render(synthetic_report))
    data["schema_version"] = "1.0"
    data.pop("waivers")
    for fmt in data["formats"]:
        for check in fmt["checks"]:
            check.pop("waiver")
        for role in fmt["roles"].values():
            role.pop("intervals")
            for attack in role["mia"].values():
                attack.pop("roc_fpr")
                attack.pop("roc_tpr")
    page = HtmlWriter().render(report_from_dict(data))
    assert 'id="fig-roc"' not in page and 'id="fig-verbmem_forget"' in page


def _screenshot(page: Path, png: Path, tmp: Path, height: int = 4200) -> None:
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--no-first-run", "--mute-audio", f"--user-data-dir={tmp / 'profile'}",
                    f"--window-size=1280,{height}", f"--screenshot={png}", page.resolve().as_uri()],
                   check=True, timeout=120, capture_output=True)


def _count_near(image, rgb: tuple[int, int, int], tol: int = 6) -> int:
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.asarray(rgb, dtype=np.int16)).max(axis=-1) <= tol).sum())


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (see README)")
def test_report_renders_in_headless_chromium(memorised, tmp_path, cli):
    from PIL import Image

    code, _, _ = cli("check", memorised["base"], memorised["unlearned"], "--suite", memorised["suite"],
                     "--config", memorised["config"], "-f", "fp,rtn8", "--threads", "1", "-q",
                     "--out", tmp_path / "out", "--format", "html")
    assert code == 1
    page = tmp_path / "out" / "report.html"
    png = tmp_path / "shot.png"
    _screenshot(page, png, tmp_path)
    image = Image.open(png)
    assert image.size == (1280, 4200)
    gray = image.convert("L")
    low, high = gray.getextrema()
    assert high - low > 200  # not blank: dark text on white
    colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50
    white = _count_near(image, (255, 255, 255), tol=3)
    assert white < 0.97 * image.size[0] * image.size[1]
    # the plots are drawn: the unlearned (red) and base (blue) series appear only inside the figures
    assert _count_near(image, _rgb(ROLE_COLORS["unlearned"])) > 2000
    assert _count_near(image, _rgb(ROLE_COLORS["base"])) > 2000
    # the FAIL badge of the verdict table is there too
    assert _count_near(image, (0xC5, 0x22, 0x1F)) > 200
