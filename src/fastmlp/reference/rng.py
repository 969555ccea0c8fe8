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


# -- the counter-based draws of the training step (csrc/rng.c: fm_stream_base, fm_hash_at) ----
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def stream_base(key: int, counter: int, stream: int) -> int:
    """Seed of the draws of (key, training step `counter`, `stream`)."""
    inner = _mix64(key ^ _mix64((counter + _GOLDEN) & _MASK))
    return _mix64(inner ^ ((stream * 0xD1B54A32D192ED03) & _MASK))


def hash_at(base: int, index: np.ndarray) -> np.ndarray:
    """splitmix64 of base + (index + 1) * golden ratio, for an array of indices."""
    with np.errstate(over="ignore"):
        z = np.uint64(base) + (index.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_at(base: int, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) doubles from the top 53 bits of hash_at."""
    return (hash_at(base, index) >> np.uint64(11)).astype(np.float64) * 2.0**-53


STREAM_DROPOUT, STREAM_NOISE, STREAM_SHIFT, STREAM_AFFINE = 0, 1000, 1001, 1002
