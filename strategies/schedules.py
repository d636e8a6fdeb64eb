"""Hypothesis strategies for schedules, drawn in batches (one draw per batch, not per decision).

A batch is a short sparse preemption list: (gap, target-offset) pairs relative to the
non-preemptive policy.  Shrinking deletes pairs (one context switch each), lowers gaps (earlier
switches) and offsets (the nearest other task), so minimal failures have the fewest switches.
"""

from __future__ import annotations

from hypothesis import strategies as st

MAX_GAP = 400  # decision points skipped before a switch; long paths (reclaim scans) need depth


def preemption_batches(max_size: int = 3) -> st.SearchStrategy[list[tuple[int, int]]]:
    """A batch of preemptions; small gaps are likelier but deep ones stay reachable."""
    gap = st.one_of(st.integers(0, 16), st.integers(0, MAX_GAP))
    return st.lists(st.tuples(gap, st.integers(0, 3)), max_size=max_size)


def pct_params() -> st.SearchStrategy[tuple[int, int, int]]:
    """(seed, depth, k) for a PCT run: depth 2..4 covers races of 1-3 ordering constraints;
    k (the run length the change points are spread over) on a log scale, since run lengths
    vary from tens to thousands of decisions."""
    return st.tuples(
        st.integers(0, 2**32 - 1), st.integers(2, 4), st.sampled_from([16, 64, 256, 1024, 4096])
    )
