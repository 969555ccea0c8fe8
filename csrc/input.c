/* input.c — the model's input rows as the engine reads them (fm_input, fastmlp.h): rows
 * gathered from a data set of any fm_input_type, row stride and row selection, converted
 * to the net's dtype and optionally mapped by the per-feature affine transform as they are
 * copied, so that uint8 images or a memory-mapped file never become a float copy of the
 * whole data set. Built with -ffp-contract=off (CMakeLists.txt): the transform rounds its
 * product and its sum as NumPy does, never as one fused multiply-add. */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* Gathered elements from which threads share the rows. Rows scattered over a large X
 * come from memory, one latency-bound stream per row: the threads share them from fewer
 * rows on than an in-cache pass would need. */
#define FM_GATHER_MIN_WORK 4096

/* IEEE half-precision bits -> float, exactly (subnormals, infinities and NaN included). */
static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else { /* subnormal: mantissa * 2^-24, normalized */
        uint32_t shifts = 0;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            shifts++;
        }
        bits = sign | ((113 - shifts) << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#define FM_TEMPLATE "input_impl.h"
#include "instantiate.h"
