"""The run's HTML page: every view and figure present, nothing external, bounded size, a
half-finished run says what is pending, and `bench report` through the CLI."""

import base64
import re
import shutil

import pytest
from html_page import Page
from PIL import Image

from bench.html_report import render_report, write_report
from bench.html_report.colours import contrast_ratio, scale_colour
from bench.html_report.images import IMAGE_BUDGET_BYTES, MAX_SIDE, ImageBudget
from bench.report import views
from bench.store import RunStore

PAGE_BOUND = IMAGE_BUDGET_BYTES * 4 // 3 + 1_000_000  # base64 images plus the text of the tables


def copy_run(store: RunStore, dest) -> RunStore:
    shutil.copytree(store.root, dest)
    return RunStore(dest)


@pytest.fixture(scope="module")
def tiny_copy(tiny_run, tmp_path_factory):
    """The tiny run with an explanation grid and an ablation-style figure added (a copy: the
    session's run stays as it is). The grid stands in for `bench explain`'s output (tested in
    test_runner.py), which takes ~15 s; the page only embeds the files it finds."""
    import numpy as np

    store = copy_run(tiny_run, tmp_path_factory.mktemp("report") / "run")
    shutil.rmtree(store.figures_dir / "explain", ignore_errors=True)
    (store.figures_dir / "explain").mkdir()
    grid = np.random.default_rng(1).integers(0, 256, (2 * 160, 7 * 160, 3), dtype=np.uint8)  # 2 rows of 7 panels
    Image.fromarray(grid).save(store.figures_dir / "explain" / "checker__pgd.png")
    Image.new("RGB", (300, 200), (40, 90, 160)).save(store.figures_dir / "latent_change_eraser.png")
    (store.figures_dir / "sweep").mkdir()
    Image.new("RGB", (300, 200), (160, 90, 40)).save(store.figures_dir / "sweep" / "eps.png")
    return store


@pytest.fixture(scope="module")
def tiny_page(tiny_copy):
    path = write_report(tiny_copy)
    return path, path.read_text(encoding="utf-8")


def test_every_view_is_a_table_in_its_section(tiny_copy, tiny_page):
    page = Page(tiny_page[1])
    stems = set(views(tiny_copy))
    assert stems == {"detectors", "auc_under_attack", "under_attack", "asr_all", "leaderboard_linf_0.035", "asr_fgsm",
                     "asr_pgd", "asr_mifgsm", "eligible", "quality", "quality_ci"}
    assert set(page.views) == stems
    sections = {stem: table.section for stem, table in page.views.items()}
    assert sections == {"detectors": "detectors", "auc_under_attack": "detectors", "under_attack": "detectors",
                        "leaderboard_linf_0.035": "leaderboards", "asr_fgsm": "matrices", "asr_pgd": "matrices",
                        "asr_mifgsm": "matrices", "asr_all": "matrices", "eligible": "matrices", "quality": "quality", "quality_ci": "quality"}
    assert page.sections == ["detectors", "leaderboards", "matrices", "quality", "explanations", "ablations"]
    board = page.table("leaderboard_linf_0.035")
    assert board.header[:6] == ["attack", "kind", "budget", "white-box ASR", "transfer ASR", "n"]
    assert [row[0] for row in board.rows] == list(views(tiny_copy)["leaderboard_linf_0.035"].index)
    assert board.rows[-1][:5] == ["pgd", "pixel", "linf 0.035 6", "78.1", "78.1"]  # 25 of 32 eligible
    for stem in ("asr_all", "quality", "quality_ci"):  # every row of the view is on the page
        assert len(page.table(stem).rows) == len(views(tiny_copy)[stem])


def test_matrices_are_coloured_with_legible_text_and_have_their_heatmap(tiny_copy, tiny_page):
    page = Page(tiny_page[1])
    matrix = views(tiny_copy)["asr_pgd"]
    table = page.table("asr_pgd")
    assert table.header == ["source \\ target", "checker", "laplace"]
    for row, styles, (source, values) in zip(table.rows, table.styles, matrix.iterrows()):
        assert row[0] == source
        for text, style, value in zip(row[1:], styles[1:], values):
            assert text == f"{value:.1f}"
            background, colour = re.fullmatch(r"background:(#[0-9a-f]{6});color:(#[0-9a-f]{6})", style).groups()
            assert background == scale_colour(value)
            assert contrast_ratio(background, colour) >= 4.5  # WCAG AA for normal text
    assert scale_colour(0.0) != scale_colour(100.0)
    for attack in ("fgsm", "pgd", "mifgsm"):
        image = next(i for i in page.images if i.get("data-figure") == f"asr_{attack}")
        assert image["section"] == "matrices"
        assert base64.b64decode(image["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_na_cells_have_a_footnote(tiny_page):
    page = Page(tiny_page[1])
    quality = page.table("quality")
    lpips = quality.header.index("LPIPS")
    assert all(row[lpips].startswith("n/a") for row in quality.rows)  # no AlexNet trunk in the tests
    assert all(not row[quality.header.index("SSIM")].startswith("n/a") for row in quality.rows)
    notes = " ".join(text for key, text in page.texts.items() if key.startswith("t-quality-n"))
    # the reasons stored per sample, with their counts (32 px frames: too small for ESNLE)
    assert "LPIPS: n/a for 89 of 89 samples (lpips_no_trunk" in notes
    assert "ESNLE adv: n/a for 89 of 89 samples (esnle_too_few_patches" in notes


def test_explanation_grid_and_other_figures_are_embedded(tiny_page):
    page = Page(tiny_page[1])
    placed = {image["data-figure"]: image["section"] for image in page.images}
    assert placed == {"asr_fgsm": "matrices", "asr_pgd": "matrices", "asr_mifgsm": "matrices",
                      "checker__pgd": "explanations", "latent_change_eraser": "ablations", "sweep/eps": "ablations"}
    for image in page.images:
        assert image["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
        assert int(image["width"]) <= MAX_SIDE and int(image["height"]) <= MAX_SIDE


def test_nothing_external_and_the_size_is_bounded(tiny_page):
    path, text = tiny_page
    page = Page(text)
    assert page.urls, "the page has images and footnote links"
    for tag, attribute, value in page.urls:
        assert value.startswith(("data:", "#")), (tag, attribute, value[:80])
    outside_images = re.sub(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"https?:|//[a-z0-9]|url\(|@import", outside_images, re.IGNORECASE)
    assert "link" not in page.tags and "iframe" not in page.tags
    assert "default-src 'none'" in text  # the browser itself refuses any request
    assert path.stat().st_size < PAGE_BOUND


def test_large_images_are_scaled_and_the_budget_leaves_figures_out(tmp_path, monkeypatch):
    import numpy as np

    from bench.html_report import images

    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 60_000)  # a smaller bound keeps the test fast
    noisy = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, MAX_SIDE + 200, 3), dtype=np.uint8)).save(noisy)
    first = ImageBudget().embed(noisy, "noise", tmp_path)
    data = base64.b64decode(first.uri.split(",", 1)[1])
    assert first.uri.startswith("data:image/jpeg") and len(data) <= 60_000  # noise: PNG is far too large
    assert first.width < MAX_SIDE and first.height < 300
    plot = tmp_path / "plot.png"
    Image.new("RGB", (MAX_SIDE * 2, 100), (200, 30, 30)).save(plot)
    flat = ImageBudget().embed(plot, "plot", tmp_path)
    assert flat.uri.startswith("data:image/png") and (flat.width, flat.height) == (MAX_SIDE, 50)
    tight = ImageBudget(budget=len(data))
    assert tight.embed(noisy, "a", tmp_path).uri is not None
    left_out = tight.embed(noisy, "b", tmp_path)
    assert left_out.uri is None and "noise.png" in left_out.note


def test_half_finished_run_says_what_is_pending(tiny_run, tmp_path):
    store = copy_run(tiny_run, tmp_path / "run")
    for folder in ("records", "tables", "figures"):
        shutil.rmtree(store.root / folder, ignore_errors=True)
    for kind in ("adv", "quality", "score"):  # laplace's mifgsm never started
        shutil.rmtree(store.root / "shards" / kind / "laplace" / "mifgsm")
    (store.root / "shards" / "clean" / "laplace" / "00003.parquet").unlink()
    page = Page(render_report(store))
    assert page.views == {} and page.sections == []
    assert page.texts["status"].startswith("Pending: this run has no records yet")
    # 16 fakes in shards of 4: 4 shards per key; 2 targets, 2 sources x 3 attacks
    assert page.table("#shard-progress").rows == [
        ["clean", "2 of 2", "7", "none"],
        ["adv", "5 of 6", "20", "laplace / mifgsm"],
        ["quality", "5 of 6", "20", "laplace / mifgsm"],
        ["score", "10 of 12", "40", "laplace / mifgsm / checker, laplace / mifgsm / laplace"]]
    shutil.rmtree(store.root / "shards")
    assert "No shard has been written yet" in Page(render_report(store)).texts["status"]


def test_bench_report_cli(tiny_run, tmp_path, capsys):
    from bench.cli import main

    target = tmp_path / "out" / "page.html"
    main(["report", str(tiny_run.root), "--to", str(target)])
    assert capsys.readouterr().out.strip() == str(target)
    assert set(Page(target.read_text()).views) == set(views(tiny_run))
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", str(bad)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "is not a run folder" in err


def test_bench_run_writes_the_page(tiny_run, tmp_path, capsys):
    from conftest import TINY_MATRIX

    from bench.cli import main

    copy_run(tiny_run, tmp_path / "tiny" / tiny_run.run_id)  # every shard exists: merge and render only
    main(["run", "--matrix", str(TINY_MATRIX), "--out", str(tmp_path), "--quiet"])
    page = tmp_path / "tiny" / tiny_run.run_id / "report.html"
    assert set(Page(page.read_text()).views) == set(views(tiny_run))


def test_tables_added_by_other_views_are_picked_up(tiny_run, monkeypatch):
    """A clean-performance table, one leaderboard per threat model, an unknown view: each lands
    in its section without a change to the page code."""
    import pandas as pd

    from bench import report

    real = report.views(tiny_run)
    extra = {
        "detectors": pd.DataFrame({"AUC": [0.91, float("nan")]}, index=pd.Index(["checker", "laplace"], name="detector")),
        "leaderboard_white_box": real["leaderboard_linf_0.035"][["white-box ASR"]],
        "leaderboard_transfer": real["leaderboard_linf_0.035"][["transfer ASR"]],
        "timings": pd.DataFrame({"seconds": [1.5]}, index=pd.Index(["fgsm"], name="attack")),
    }
    monkeypatch.setattr(report, "views", lambda store: {**real, **extra})
    page = Page(render_report(tiny_run))
    placed = {stem: table.section for stem, table in page.views.items() if stem in extra}
    assert placed == {"detectors": "detectors", "leaderboard_white_box": "leaderboards",
                      "leaderboard_transfer": "leaderboards", "timings": "more"}
    assert page.sections[:2] == ["detectors", "leaderboards"] and page.sections[-1] == "more"
    assert page.table("detectors").rows == [["checker", "0.910"], ["laplace", "n/a1"]]
    assert page.texts["t-leaderboard_transfer"] == "Leaderboard: transfer"


def test_the_header_summarises_what_the_compute_stage_stored(tiny_copy, tiny_page):
    """The manifest's machine-facing parts (resolved options, sample lists, hashes) are summarised,
    never dumped: entry versions and sample counts, no identity or traits mapping."""
    text = tiny_page[1]
    manifest = tiny_copy.manifest
    assert "entry versions" in text and "attacks.pgd" in text and "pgd@1" in text
    fakes, reals = len(manifest["samples"]["fakes"]), len(manifest["samples"]["reals"])
    assert f"{fakes} fakes attacked, {reals} reals" in text
    assert "inversion_condition" not in text and "&#39;options&#39;" not in text and "'options'" not in text
    assert "Leaderboard, L∞ ε = 0.035" in text  # the leaderboard titles carry their budget
