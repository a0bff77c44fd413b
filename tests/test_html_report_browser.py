"""The report page in a real browser: Debian's headless Chromium loads it from disk, a probe
script (added to a test copy of the page only) clicks a table header and writes the rows'
order and every error it saw into the DOM, which Chromium dumps for the asserts."""

import html
import json
import re

import pytest
from chromium import dump_dom, find_chromium, screenshot
from PIL import Image

from bench.html_report import write_report
from bench.report import views

# before the page's own script: collect uncaught errors, console.error calls and blocked requests
PROBE_HEAD = """<script>
window.__probeErrors = [];
window.addEventListener('error', function (e) { window.__probeErrors.push('error: ' + e.message); });
window.addEventListener('unhandledrejection', function (e) { window.__probeErrors.push('rejection: ' + e.reason); });
document.addEventListener('securitypolicyviolation', function (e) {
  window.__probeErrors.push('blocked: ' + e.blockedURI + ' (' + e.violatedDirective + ')'); });
(function () { var error = console.error; console.error = function () {
  window.__probeErrors.push('console: ' + Array.prototype.join.call(arguments, ' ')); error.apply(console, arguments); }; })();
</script>"""

# after the page's script: click the header of column COLUMN of table STEM twice, record the orders
PROBE_END = """<script>
window.addEventListener('load', function () {
  var out = {sortable: document.querySelectorAll('table.js-sortable').length, clicks: []};
  try {
    var table = document.querySelector('table[data-stem="STEM"]');
    var header = Array.prototype.filter.call(table.tHead.rows[0].cells, function (th) { return th.textContent === 'COLUMN'; })[0];
    for (var i = 0; i < 2; i++) {
      header.click();
      out.clicks.push({aria: header.getAttribute('aria-sort'), order: Array.prototype.map.call(table.tBodies[0].rows,
        function (row) { return row.cells[0].textContent + '/' + row.cells[1].textContent; })});
    }
  } catch (e) { window.__probeErrors.push('probe: ' + e); }
  setTimeout(function () {  /* let late errors and policy reports arrive first */
    out.errors = window.__probeErrors;
    var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 200);
});
</script>"""


@pytest.fixture(scope="module")
def chromium():
    browser = find_chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed: .ci/run installs Debian's `chromium` package with apt-get, "
                    "which failed or was not run here (install it with `apt-get install -y chromium`)")
    return browser


def probe_copy(page_text: str, dest, stem: str, column: str, extra_body: str = ""):
    text = page_text.replace("<head>", "<head>\n" + PROBE_HEAD, 1)
    probe = PROBE_END.replace("STEM", stem).replace("COLUMN", column)
    dest.write_text(text.replace("</body>", extra_body + probe + "\n</body>", 1), encoding="utf-8")
    return dest


def read_probe(dom: str) -> dict:
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the probe script did not run: " + dom[-500:]
    return json.loads(html.unescape(found.group(1)))


def test_page_sorts_by_header_click_without_errors(tiny_run, chromium, tmp_path):
    page = write_report(tiny_run, tmp_path / "report.html")
    test_page = probe_copy(page.read_text(encoding="utf-8"), tmp_path / "probe.html", "quality", "TV adv")
    dom, log = dump_dom(chromium, test_page)
    result = read_probe(dom)
    assert result["errors"] == []
    assert "Uncaught" not in log and "Refused to" not in log, log[-2000:]
    assert result["sortable"] == len(views(tiny_run))  # every view's table became sortable
    quality = views(tiny_run)["quality"]["TV adv"]
    keys = [f"{source}/{attack}" for source, attack in quality.index]
    descending = [keys[i] for i in sorted(range(len(keys)), key=lambda i: -quality.iloc[i])]  # numbers: largest first
    ascending = sorted(descending, key=lambda k: quality.iloc[keys.index(k)])
    assert descending != keys, "the click must change the order for this test to mean anything"
    assert result["clicks"] == [{"aria": "descending", "order": descending}, {"aria": "ascending", "order": ascending}]
    shot = tmp_path / "report.png"
    screenshot(chromium, test_page, shot, height=1600)
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        low, high = image.convert("L").getextrema()
        assert high - low > 100  # text on a background, not a blank page


def test_the_page_policy_blocks_any_request(tiny_run, chromium, tmp_path):
    """The page's Content-Security-Policy refuses a network request even if one slipped in."""
    page = write_report(tiny_run, tmp_path / "report.html")
    slipped = '<img src="https://example.invalid/pixel.png" alt="">'
    test_page = probe_copy(page.read_text(encoding="utf-8"), tmp_path / "probe.html", "leaderboard_linf_0.035", "attack", slipped)
    result = read_probe(dump_dom(chromium, test_page)[0])
    assert result["errors"] == ["blocked: https://example.invalid/pixel.png (img-src)"]
