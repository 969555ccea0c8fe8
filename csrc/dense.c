/* dense.c — the dense layer: fused forward (matmul + bias + activation) and the
 * backward kernels (weight/bias gradients, input gradient with the previous
 * layer's activation derivative fused).
 *
 * Parallel work is split so that each output element is computed by exactly one
 * thread in a fixed order: results do not depend on the thread count. */
#include "isa.h"
#include "kernels.h"

#define real float
#define FN(name) name##_f32
#include "dense_impl.h"
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include "dense_impl.h"
#undef real
#undef FN
