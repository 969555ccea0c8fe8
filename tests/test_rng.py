"""The engine's random numbers and their pure-Python twin."""

from __future__ import annotations

import fastmlp
from fastmlp.reference.rng import Xoshiro256


def test_splitmix_seeding_matches_the_published_first_output():
    # splitmix64 from x = 0 first returns 0xE220A8397B1DCDAF (Vigna's reference code)
    assert Xoshiro256(0).state[0] == 0xE220A8397B1DCDAF


def test_engine_and_twin_produce_the_same_stream():
    for seed in (0, 42, 2**64 - 1):
        engine = fastmlp.MLP([1, 1], seed=0)._engine
        engine.seed(seed)
        twin = Xoshiro256(seed)
        assert [engine.next_u64() for _ in range(100)] == [twin.next() for _ in range(100)]


def test_below_is_in_range_and_covers_it():
    rng = Xoshiro256(1)
    draws = [rng.below(7) for _ in range(2000)]
    assert set(draws) == set(range(7))
