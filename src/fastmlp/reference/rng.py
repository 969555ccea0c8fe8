"""Pure-Python twin of the engine's random numbers (csrc/rng.c):
xoshiro256** seeded by splitmix64, and a Fisher-Yates shuffle."""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _MASK


class Xoshiro256:
    """xoshiro256** (Blackman & Vigna, 2018)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Fill the state with four splitmix64 outputs of `seed`."""
        x = seed & _MASK
        state = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & _MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            state.append(z ^ (z >> 31))
        self.state = state

    def next(self) -> int:
        s = self.state
        result = (_rotl((s[1] * 5) & _MASK, 7) * 9) & _MASK
        t = (s[1] << 17) & _MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, n: int) -> int:
        """Uniform integer in [0, n): the high 64 bits of next() * n."""
        return (self.next() * n) >> 64

    def shuffle(self, order: np.ndarray) -> None:
        """Fisher-Yates in place: for i = n-1 .. 1, swap order[i] with order[below(i + 1)]."""
        for i in range(len(order) - 1, 0, -1):
            j = self.below(i + 1)
            order[i], order[j] = order[j], order[i]
