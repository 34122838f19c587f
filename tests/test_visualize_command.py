"""kt visualize draws one row per image and one column per stage, attention or Grad-CAM."""
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ktcli.commands.visualize import CELL
from ktcli.main import app
from ktcli.reports.prediction_panels import FRAME, RIGHT, WRONG


@pytest.mark.parametrize('method', ['attention', 'gradcam'])
def test_grid_has_one_row_per_image_and_a_column_per_stage(trained_work_dir, tmp_path, method):
    out = tmp_path / 'grid.png'
    result = CliRunner().invoke(app, ['visualize', str(trained_work_dir), '--count', '3',
                                      '--out', str(out), '--method', method])
    assert result.exit_code == 0, result.output
    assert f'3 images x 2 stages ({method})' in result.output
    grid = np.asarray(Image.open(out).convert('RGB'))
    height, width, _ = grid.shape
    assert width == 3 * CELL and height % 3 == 0  # the image + 2 stages; 3 equal rows
    top = height // 3 - CELL  # the titles above the first row's panels
    assert top > 0
    plain = grid[top + FRAME:top + CELL - FRAME, FRAME:CELL - FRAME]
    for column in (1, 2):
        panel = grid[top:top + CELL, column * CELL:(column + 1) * CELL]
        # A heat map is drawn over the image, in a frame that says right or wrong.
        assert not np.array_equal(panel[FRAME:-FRAME, FRAME:-FRAME], plain)
        assert tuple(panel[0, CELL // 2]) in (RIGHT, WRONG)


def test_missing_image_is_one_clear_error(trained_work_dir, tmp_path):
    result = CliRunner().invoke(app, ['visualize', str(trained_work_dir), '--images',
                                      str(tmp_path / 'nope.jpg')])
    assert result.exit_code == 2
    assert 'nope.jpg does not exist' in result.output
