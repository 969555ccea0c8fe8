/* regularize.c — dropout masks, batch normalization and training-time input
 * augmentation (random affine maps and shifts of images, Gaussian noise). Randomness comes from the
 * counter-based hash in rng.c, so masks do not depend on the thread count and the
 * NumPy reference (fastmlp.reference.rng) can draw the same ones. */
#include <math.h>
#include <string.h>

#include "kernels.h"

/* inv (2x2, row-major) = the inverse of sample i's affine map A = R(theta) Sh(phi) s, in
 * (column, row) coordinates: R = [[cos, sin], [-sin, cos]] turns the content
 * counterclockwise as displayed (rows pointing down), Sh = [[1, tan phi], [0, 1]] slants
 * it horizontally, s scales it; theta, s, phi from three draws at 3i, 3i + 1, 3i + 2. */
static void fm_affine_inverse(double inv[4], const fm_augment *aug, uint64_t base, int i) {
    const double deg = 3.14159265358979323846 / 180;
    const double theta = (2 * fm_unit(fm_hash_at(base, 3 * (uint64_t)i)) - 1) * aug->rotate * deg;
    const double s = 1 + (2 * fm_unit(fm_hash_at(base, 3 * (uint64_t)i + 1)) - 1) * aug->scale;
    const double t = tan((2 * fm_unit(fm_hash_at(base, 3 * (uint64_t)i + 2)) - 1) * aug->shear * deg);
    const double c = cos(theta), sn = sin(theta);
    /* A^-1 = s^-1 Sh^-1 R^-1, Sh^-1 = [[1, -t], [0, 1]], R^-1 = [[c, -sn], [sn, c]] */
    inv[0] = (c - t * sn) / s;
    inv[1] = (-sn - t * c) / s;
    inv[2] = sn / s;
    inv[3] = c / s;
}

#define FM_TEMPLATE "regularize_impl.h"
#include "instantiate.h"
