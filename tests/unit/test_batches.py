"""How the engine sizes its batches: each batch aims at TARGET_SHARE of max_batch_seconds, the size
changes by at most a factor of two from one batch to the next, stays within MIN_BATCH_SIZE and
batch_size, and settles where a batch takes its target time."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.engine import batches
from tests.helpers import prune_limits

LIMITS = prune_limits(batch_size=5000, max_batch_seconds=1.0, lock_timeout=0.2)
GOAL = batches.TARGET_SHARE * LIMITS.max_batch_seconds

sizes = st.integers(min_value=batches.MIN_BATCH_SIZE, max_value=LIMITS.batch_size)
elapsed_times = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def test_a_batch_that_took_its_target_time_keeps_its_size():
    assert batches._adapt(800, GOAL, LIMITS) == 800


@pytest.mark.parametrize(
    ("elapsed", "size"),
    [
        (GOAL / 1.5, 1200),  # 1.5x faster than the target: 1.5x the rows
        (GOAL * 1.25, 640),  # 1.25x slower: 1/1.25 of the rows
        (GOAL / 2, 1600),
        (GOAL * 2, 400),
    ],
)
def test_the_size_follows_the_time_a_batch_took(elapsed, size):
    assert batches._adapt(800, elapsed, LIMITS) == size


@pytest.mark.parametrize("elapsed", [0.0, 1e-9, GOAL / 100])
def test_a_fast_batch_at_most_doubles(elapsed):
    assert batches._adapt(800, elapsed, LIMITS) == 1600


@pytest.mark.parametrize("elapsed", [GOAL * 3, 60.0, 1e9])
def test_a_slow_batch_at_most_halves(elapsed):
    assert batches._adapt(800, elapsed, LIMITS) == 400


def test_never_above_batch_size_nor_below_the_minimum():
    assert batches._adapt(4000, 0.0, LIMITS) == LIMITS.batch_size
    assert batches._adapt(LIMITS.batch_size, 0.0, LIMITS) == LIMITS.batch_size
    assert batches._adapt(batches.MIN_BATCH_SIZE, 1e9, LIMITS) == batches.MIN_BATCH_SIZE
    assert batches._adapt(15, 1e9, LIMITS) == batches.MIN_BATCH_SIZE
    small = prune_limits(batch_size=3, max_batch_seconds=1.0, lock_timeout=0.2)
    assert batches._adapt(3, 0.0, small) == 3, "batch_size wins over the minimum"


@given(sizes, elapsed_times)
def test_one_step_stays_within_a_factor_of_two_and_the_bounds(size, elapsed):
    new = batches._adapt(size, elapsed, LIMITS)
    assert batches.MIN_BATCH_SIZE <= new <= LIMITS.batch_size
    assert size // 2 <= new <= size * 2


@given(sizes, elapsed_times, elapsed_times)
def test_a_faster_batch_never_gets_a_smaller_next_batch(size, one, other):
    faster, slower = sorted((one, other))
    assert batches._adapt(size, faster, LIMITS) >= batches._adapt(size, slower, LIMITS)


@given(
    sizes,
    st.floats(min_value=GOAL / LIMITS.batch_size * 1.01, max_value=GOAL / 20),
)
def test_with_a_steady_cost_per_row_the_size_settles_on_the_target_time(start, per_row):
    size = start
    for _ in range(40):
        size = batches._adapt(size, size * per_row, LIMITS)
    assert abs(size * per_row - GOAL) <= 0.02 * GOAL + 2 * per_row
    assert batches._adapt(size, size * per_row, LIMITS) in range(size - 2, size + 3)


@pytest.mark.parametrize(
    ("lock_timeout", "milliseconds"),
    [
        (dt.timedelta(microseconds=100), 1),
        (dt.timedelta(microseconds=1500), 2),
        (dt.timedelta(milliseconds=200), 200),
    ],
)
def test_the_lock_wait_is_whole_milliseconds_never_zero(lock_timeout, milliseconds):
    limits = prune_limits(batch_size=10, max_batch_seconds=1.0, lock_timeout=0.2)
    limits.lock_timeout = lock_timeout
    assert limits.lock_timeout_ms == milliseconds
