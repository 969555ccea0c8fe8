/* penalty.c — weight penalties (L2, L1 by subgradient or proximal soft-threshold)
 * over the parameter layout of fastmlp.h. Biases and BN parameters are excluded
 * unless the penalty asks for them. */
#include <math.h>

#include "isa.h"
#include "kernels.h"

#define FM_TEMPLATE "penalty_impl.h"
#include "instantiate.h"
