"""dev/compare_reports.py: two reports agree when their results agree, whatever their timings."""

import os

from conftest import REPO
from dev.compare_reports import compare

REPORT = open(os.path.join(REPO, 'records', '2026-12_let_regime', 'report.md')).read()


def test_a_report_agrees_with_itself_and_with_other_timings():
    assert compare(REPORT, REPORT)[1]
    retimed = REPORT.replace('| 443.5 ± 59.2 [381.1..498.8]', '| 401.0 ± 12.0 [390.0..410.0]')
    assert retimed != REPORT and compare(REPORT, retimed)[1]


def test_a_changed_loss_or_step_count_is_found():
    lines, same = compare(REPORT, REPORT.replace('1.7920 ± 0.0080', '1.7921 ± 0.0080', 1))
    assert not same and any('differs' in line for line in lines)
    assert not compare(REPORT, REPORT.replace('| 1618 ± 53', '| 1619 ± 53', 1))[1]
