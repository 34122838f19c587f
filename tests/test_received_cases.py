"""Every received-work-dir and export case of issues 16 and 26 (tests/received_cases.py,
tests/received_meanings.py), each in a process of its own: exit 0 or 2, at most one line on
stderr naming the problem, no traceback,
nothing outside the work dir read, written or run."""
import pytest

from .received_cases import CASES
from .received_meanings import MEANING_CASES
from .received_copies import PAYLOAD_MARKER, ZEN, received, snapshot


def check_outcome(case, result, ctx, before) -> str:
    """Assert what every case must end with; the stderr line (or '')."""
    output = result.stdout + result.stderr
    assert result.returncode == case.code, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) <= 1, result.stderr
    if case.expect:
        assert lines and case.expect in lines[0], result.stderr
    assert ZEN not in output and PAYLOAD_MARKER not in output
    assert not ctx.marker.exists()
    assert snapshot(ctx.outside) == before
    if case.after is not None:
        case.after(ctx)
    return lines[0] if lines else ''


@pytest.mark.parametrize('case', CASES + MEANING_CASES,
                         ids=[case.name for case in CASES + MEANING_CASES])
def test_received_case(case, tmp_path, trained_work_dir, demo_root, exported, kt_server):
    ctx = received(tmp_path, trained_work_dir, demo_root, exported)
    before = snapshot(ctx.outside)
    args = case.prepare(ctx)
    check_outcome(case, kt_server.run(*args), ctx, before)
