/* heads.c — the loss of a multitask net: one shared trunk, several heads. The output layer's
 * columns are the heads' blocks side by side (fm_head: offset, width, loss, weight); the
 * objective is sum_h weight_h * (mean over the batch of head h's loss), each head's loss
 * being fm_loss's on its own block (softmax per block for cross_entropy, sigmoid for
 * binary_cross_entropy, ...). The delta of each block is the head's fm_loss delta times its
 * weight, so the backward pass and the optimizers do not know about heads. Sample weights
 * apply to the whole sample, as in fm_loss. */
#include "kernels.h"

#define FM_TEMPLATE "heads_impl.h"
#include "instantiate.h"
