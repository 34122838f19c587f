"""kt visualize draws one row per image and one column per stage."""
from PIL import Image
from typer.testing import CliRunner

from ktcli.commands.visualize import CELL, TITLE
from ktcli.main import app


def test_grid_has_one_row_per_image_and_a_column_per_stage(trained_work_dir, tmp_path):
    out = tmp_path / 'grid.png'
    result = CliRunner().invoke(app, ['visualize', str(trained_work_dir), '--count', '3',
                                      '--out', str(out)])
    assert result.exit_code == 0, result.output
    grid = Image.open(out)
    assert grid.size == (3 * CELL, 3 * (CELL + TITLE))  # the image + 2 stages; 3 rows
    # Each attention cell differs from the plain image beside it (a heat map is drawn).
    plain = grid.crop((0, TITLE, CELL, TITLE + CELL)).tobytes()
    assert grid.crop((CELL, TITLE, 2 * CELL, TITLE + CELL)).tobytes() != plain


def test_missing_image_is_one_clear_error(trained_work_dir, tmp_path):
    result = CliRunner().invoke(app, ['visualize', str(trained_work_dir), '--images',
                                      str(tmp_path / 'nope.jpg')])
    assert result.exit_code == 2
    assert 'nope.jpg does not exist' in result.output
