"""Seeded random histories (``random_histories``) end with `verify` finding nothing.

A fixed range of seeds runs here (about two seconds); ``python -m tests.protocol.random_histories
SECONDS [FIRST_SEED]`` searches further and prints the steps of any failing seed.
"""

from pathlib import Path

import pytest

from tests.protocol.random_histories import run_seed

# 1-60, and seeds that found a defect with this generator (retention racing deliveries: analytics
# rows and memory status of expired calls, has_audio after audio expired; a retry after a dead write;
# rows of an expired call a merge folded in before the retry took them back; a transcript writing
# has_audio over an audio expiry, twice; expired audio a dead delivery wrote, left by its retry; a
# version leaving a closed day dropping a newer version's rows written there meanwhile).
SEEDS = [*range(1, 61), 402, 1034, 1058, 2626, 7746, 28167, 44965, 48065, 51276, 54702, 70753, 73936]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_history_verifies_clean(seed: int, tmp_path: Path) -> None:
    problems, steps = run_seed(seed, root=tmp_path)
    assert problems == [], f"seed {seed}: {problems}\nsteps: " + " | ".join(steps)
