/* optim.c — in-place parameter updates. Elementwise, so any split over threads
 * gives the same result. */
#include "kernels.h"

#define real float
#define FN(name) name##_f32
#include "optim_impl.h"
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include "optim_impl.h"
#undef real
#undef FN
