"""kt report on the shared tiny work dir: its figures, its page offline, and the page in a
real headless Chromium."""
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ktcli.main import app

from .conftest import cached_outputs

GALLERY = 4
CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')


@pytest.fixture(scope='module')
def report(trained_work_dir, tmp_path_factory) -> dict:
    """The report of the 2-stage work dir: its page, its figures (--json), the CLI output."""
    folder = tmp_path_factory.mktemp('report')
    page, figures = folder / 'report.html', folder / 'figures.json'
    result = CliRunner().invoke(app, ['report', str(trained_work_dir), '--out', str(page),
                                      '--images', str(GALLERY), '--json', str(figures)])
    assert result.exit_code == 0, result.output
    return dict(page=page, html=page.read_text(), figures=json.loads(figures.read_text()),
                output=result.output, folder=folder)


def _cached_outputs(work_dir: Path) -> list:
    from ktcli.stages.work_dir import trained_stages
    return [cached_outputs(stage.dir / 'test_outputs.pt')
            for stage in trained_stages(work_dir)]


def test_per_class_accuracy_is_recomputed_from_the_cached_logits(report, trained_work_dir):
    outputs = _cached_outputs(trained_work_dir)
    labels = outputs[0]['labels']
    classes = report['figures']['per_class']['classes']
    for index, output in enumerate(outputs, start=1):
        predicted = output['logits'].argmax(dim=1)
        for row in classes:
            mine = labels == row['index']
            expected = 100 * (predicted[mine] == labels[mine]).float().mean().item()
            assert row['accuracy'][f'stage {index}'] == pytest.approx(expected)
    confusion = np.asarray(report['figures']['per_class']['confusion'])
    assert confusion.sum() == len(labels)
    assert confusion.sum(axis=1).tolist() == [row['images'] for row in classes]


def test_the_stage_figures_are_results_json(report, trained_work_dir):
    results = json.loads((trained_work_dir / 'results.json').read_text())['stages']
    stages = report['figures']['sequence']['stages']
    assert [s['index'] for s in stages] == [r['index'] for r in results]
    for mine, theirs in zip(stages, results):
        assert mine['top1'] == pytest.approx(theirs['top1'])
        assert mine['ensemble_top1'] == pytest.approx(theirs['ensemble_top1'])
        low, high = mine['ensemble_top1_ci']
        assert low <= mine['ensemble_top1'] <= high
    assert stages[1]['ensemble_vs_stage_1']['verdict']
    calibration = {model['name']: model for model in report['figures']['calibration']}
    assert set(calibration) == {'stage 1', 'stage 2', 'ensemble'}
    assert all(0 <= model['ece'] <= 1 and model['nll'] > 0 for model in calibration.values())


def test_the_page_is_self_contained(report):
    html = report['html']
    assert not re.search(r'(src|href)="(?!data:|#)', html)   # images inline, links in-page
    assert 'url(' not in html and '@import' not in html and '<link' not in html
    assert 'http://' not in html and 'https://' not in html
    assert len(re.findall(r'<img src="data:image/(png|jpeg);base64,', html)) == len(
        re.findall('<img', html))
    assert len(report['figures']['gallery']['images']) == GALLERY
    assert 'wrote' in report['output']


def test_report_of_no_work_dir_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ['report', str(tmp_path)])
    assert result.exit_code == 2
    assert 'is not a kt work dir' in result.output and 'Traceback' not in result.output


def _chromium_missing() -> str:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        return ('Debian\'s chromium and chromium-driver are not installed (.ci/run installs '
                'them: apt-get install chromium chromium-driver)')
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install -e ".[test]")'
    return ''


def test_the_page_in_headless_chromium(report, trained_work_dir, tmp_path):
    missing = _chromium_missing()
    if missing and os.environ.get('KT_REQUIRE_CHROMIUM') == '1':
        pytest.fail(f'KT_REQUIRE_CHROMIUM=1 but {missing}')
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ('--headless', '--no-sandbox', '--disable-gpu',
                     '--disable-background-networking', '--disable-component-update',
                     '--disable-sync', '--no-first-run', '--window-size=1400,1000',
                     f'--user-data-dir={tmp_path / "profile"}'):
        options.add_argument(argument)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(report['page'].as_uri())
        images = driver.find_elements(By.TAG_NAME, 'img')
        assert images
        widths = [driver.execute_script(
            'return arguments[0].complete && arguments[0].naturalWidth', img) for img in images]
        assert all(width and width > 0 for width in widths), widths
        results = json.loads((trained_work_dir / 'results.json').read_text())['stages']
        rows = driver.find_elements(By.CSS_SELECTOR, 'table#stages tbody tr')
        assert len(rows) == len(results)
        for row, result in zip(rows, results):
            cells = [cell.text for cell in row.find_elements(By.TAG_NAME, 'td')]
            assert cells[0] == str(result['index'])
            assert cells[2].startswith(f'{result["top1"]:.2f} [')
            assert cells[3].startswith(f'{result["ensemble_top1"]:.2f} [')
        gallery = driver.find_elements(By.CSS_SELECTOR, '.gallery figure')
        assert len(gallery) == GALLERY
        truths = [figure.find_element(By.CSS_SELECTOR, '.true-label').text for figure in gallery]
        assert truths == [image['true'] for image in report['figures']['gallery']['images']]
        # The per-class table sorts by a column when its header is clicked.
        table = driver.find_element(By.ID, 'per-class-accuracy')
        table.find_elements(By.TAG_NAME, 'th')[1].click()
        counts = [int(row.find_elements(By.TAG_NAME, 'td')[1].text)
                  for row in table.find_elements(By.CSS_SELECTOR, 'tbody tr')]
        assert counts == sorted(counts)
        errors = [entry for entry in driver.get_log('browser') if entry['level'] == 'SEVERE']
        assert not errors, errors
        screenshot = tmp_path / 'report.png'
        assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / 'profile', ignore_errors=True)
