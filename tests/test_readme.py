"""The README's claims about the code that a test can check: the line counts it quotes, the files it names."""

import os
import re

from conftest import REPO

README = open(os.path.join(REPO, 'README.md')).read()


def test_every_line_count_the_readme_quotes_is_the_files():
    quoted = re.findall(r'^(\S+\.py)\s+\((\d+) lines\)', README, flags=re.M)
    quoted += re.findall(r'\[(\S+\.py)\]\(\S+\) is the idea \((\d+) lines\)', README)
    assert len(quoted) >= 5, quoted
    for path, n in quoted:
        with open(os.path.join(REPO, path)) as f:
            assert len(f.read().splitlines()) == int(n), f"README quotes {path} as {n} lines"


def test_every_file_and_folder_in_the_readmes_tree_exists():
    tree = README.split('## Files', 1)[1].split('```')[1]
    names = re.findall(r'^(\S+)\s', tree, flags=re.M)
    assert len(names) > 15
    assert all(os.path.exists(os.path.join(REPO, name)) for name in names), names
