"""Real-world mail nobody here wrote: no robot is acknowledged, and people are.

Bounces from dozens of MTAs and providers, feedback reports and auto-replies (the sisimai
project's set-of-emails) and ordinary mail in many shapes (the mail library's fixtures),
labelled by reading each file, are decided as the daemon decides a new message
(`tests/corpora.py`). Targets (issue 16): not one robot acknowledged, at least 98 % of the
people's mail acknowledged. Labels this project disputes are listed there with the reason
and not scored. `benchmarks/robots.py` prints the same figures and records them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpora import (
    CLASSES,
    DISPUTED,
    corpora_root,
    corpus_policy,
    judge,
    labelled,
    report,
    score,
)

HUMAN_TARGET = 0.98


@pytest.fixture(scope="module")
def root() -> Path:
    found = corpora_root()
    if found is None:
        pytest.skip("the shared corpora are not beside this repository (../shared/corpora); "
                    "set MAILBRIDGE_CORPORA to their folder to run this test")
    return found


def test_robots_are_never_acknowledged_and_people_are(root: Path, tmp_path: Path) -> None:
    """Over every labelled message, no robot gets an acknowledgement and 98 % of people do."""
    result = score(judge(root, corpus_policy(tmp_path)))
    text = report(result)
    print(text)
    assert result.judged["robot"] > 800 and result.judged["human"] > 80, text
    assert not result.robots_acknowledged, text
    assert result.human_share >= HUMAN_TARGET, text


def test_every_disputed_label_is_in_the_corpora(root: Path) -> None:
    """The disputed labels name messages that exist, so none is left behind stale."""
    found = {source: label for source, label, _raw in labelled(root)}
    assert set(found.values()) <= set(CLASSES)
    assert set(DISPUTED) <= set(found)
