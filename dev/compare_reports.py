"""Whether two of speedup.py's reports hold the same results: every markdown table, cell by cell, with the columns
that measure time or the machine's load left out (they differ from run to run; the step counts and losses do not).

$ python -m dev.compare_reports records/2026-12_let_regime/report.md out-regime-shakespeare/report.md

Prints each table's verdict and the rows that differ; exits 1 when any differs.
"""

import re
import sys

TIMED = re.compile(r'time|wall|clock|load|\(s\)|\bms\b', re.I)  # headers of the columns left out


def tables(text):
    """The markdown tables of text, each a list of rows (lists of cells), its header first."""
    found, rows = [], None
    for line in text.splitlines():
        if not line.startswith('|'):
            rows = None
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if rows is None:
            rows = [cells]
            found.append(rows)
        elif not set(''.join(cells)) <= set('-: '):  # the header's underline
            rows.append(cells)
    return found


def results(table):
    """The table without its time and load columns."""
    keep = [i for i, name in enumerate(table[0]) if not TIMED.search(name)]
    return [[row[i] for i in keep] for row in table]


def compare(a, b):
    """Lines saying, table by table, whether the two reports' results agree; and whether all of them do."""
    ta, tb = tables(a), tables(b)
    lines, same = [], len(ta) == len(tb)
    if not same:
        lines.append(f"{len(ta)} tables against {len(tb)}")
    for i, (x, y) in enumerate(zip(map(results, ta), map(results, tb))):
        if x == y:
            lines.append(f"table {i + 1} ({', '.join(x[0])}): {len(x) - 1} rows identical")
            continue
        same = False
        lines.append(f"table {i + 1} ({', '.join(x[0])}) differs:")
        lines += [f"  {r}\n  {s}" for r, s in zip(x, y) if r != s]
    return lines, same


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    report_lines, identical = compare(open(sys.argv[1]).read(), open(sys.argv[2]).read())
    print('\n'.join(report_lines))
    print('identical' if identical else 'DIFFERENT')
    sys.exit(0 if identical else 1)
