"""Hypothesis strategies for schedules, drawn in batches (one draw per batch, not per decision).

A batch is a short sparse preemption list: (gap, target-offset) pairs relative to the
non-preemptive policy.  Shrinking deletes pairs (one context switch each), lowers gaps (earlier
switches) and offsets (the nearest other task), so minimal failures have the fewest switches.
"""

from __future__ import annotations

from hypothesis import strategies as st
from vmfuzz.strategies._flat import flat

GAP_BITS = 9  # gaps up to 511 decision points: long paths (reclaim scans) need depth


def gaps() -> st.SearchStrategy[int]:
    """Log-uniform gaps: a magnitude 2**b, then a value below it.  A window of width w at
    depth d is hit with probability ~ w / (d * GAP_BITS), not w / MAX: deep windows stay
    findable and shallow ones likely.  Shrinks towards 0 (switch at the next decision)."""
    top = 1 << GAP_BITS
    return st.tuples(st.integers(0, GAP_BITS), st.integers(0, top - 1)).map(
        lambda t: t[1] % (1 << t[0])
    )


def preemption_batches(max_size: int = 3) -> st.SearchStrategy[list[tuple[int, int]]]:
    """A batch of (gap, target-offset) preemptions."""
    return flat(st.lists(st.tuples(gaps(), st.integers(0, 3)), max_size=max_size))


def pct_params() -> st.SearchStrategy[tuple[int, int, int]]:
    """(seed, depth, k) for a PCT run: depth 2..4 covers races of 1-3 ordering constraints;
    k (the run length the change points are spread over) on a log scale, since run lengths
    vary from tens to thousands of decisions."""
    return flat(st.tuples(
        st.integers(0, 2**32 - 1), st.integers(2, 4), st.sampled_from([16, 64, 256, 1024, 4096])
    ))
