/* rng.c — the engine's seeded random numbers: xoshiro256** (Blackman & Vigna),
 * seeded by splitmix64, and a Fisher-Yates shuffle. fastmlp.reference.rng is the
 * pure-Python twin; tests check they agree bit for bit. */
#include "fastmlp.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void fm_rng_seed(uint64_t state[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) state[i] = splitmix64(&seed);
}

/* The generator's step, inlined into the shuffle (the exported functions below are not
 * inlined into each other in a shared library: -fPIC lets them be interposed). */
static inline uint64_t rng_next(uint64_t s[4]) {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static inline uint64_t rng_below(uint64_t state[4], uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_next(state) * n) >> 64);
}

uint64_t fm_rng_next(uint64_t s[4]) { return rng_next(s); }

uint64_t fm_rng_below(uint64_t state[4], uint64_t n) { return rng_below(state, n); }

void fm_shuffle(uint64_t state[4], int64_t *order, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)rng_below(state, (uint64_t)i + 1);
        const int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

/* Counter-based draws for the training step (dropout masks, noise, shifts): a
 * splitmix64 stream whose seed is a hash of (key, counter, stream), read at `index`.
 * Any element can be drawn independently, so results do not depend on threads. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t fm_stream_base(uint64_t key, uint64_t counter, uint64_t stream) {
    return mix64(mix64(key ^ mix64(counter + 0x9E3779B97F4A7C15ull)) ^ (stream * 0xD1B54A32D192ED03ull));
}

uint64_t fm_hash_at(uint64_t base, uint64_t index) {
    return mix64(base + (index + 1) * 0x9E3779B97F4A7C15ull);
}

/* The stream base whose draw i is draw i + k of `base` (a batch's rows from row k on). */
uint64_t fm_stream_skip(uint64_t base, uint64_t k) { return base + k * 0x9E3779B97F4A7C15ull; }

uint64_t fm_hash(uint64_t key, uint64_t counter, uint64_t stream, uint64_t index) {
    return fm_hash_at(fm_stream_base(key, counter, stream), index);
}

double fm_uniform(uint64_t key, uint64_t counter, uint64_t stream, uint64_t index) {
    return (double)(fm_hash(key, counter, stream, index) >> 11) * 0x1.0p-53;
}
