/* dense.c — the dense layer: fused forward (matmul + bias + activation) and the
 * backward kernels (weight/bias gradients, input gradient with the previous
 * layer's activation derivative fused), as drivers that spread register tiles over
 * threads. The tiles come from the selected ISA kernels (gemm.h); the generic path uses
 * the portable C tiles of dense_impl.h, compiled per ISA by target_clones; the BLAS set
 * hands the three products to blas.c.
 *
 * Parallel work is split so that each output element is computed by exactly one
 * thread in a fixed order: results do not depend on the thread count. */
#ifdef FASTMLP_HAVE_OPENMP
#include <omp.h>
#endif

#include <string.h>

#include "blas.h"
#include "cpuinfo.h"
#include "gemm.h"
#include "isa.h"
#include "kernels.h"

#define FM_TEMPLATE "dense_impl.h"
#include "instantiate.h"

/* Weight panels for repeated predicts: layer after layer, panel after panel, each panel
 * K rows of the active kernel's nr columns, exactly as packed_product packs them. */
int fm_panel_width(void) { return fm_panel_width_of(sizeof(float)); }

int fm_panel_width_of(size_t elem) {
    const fm_kernel_set *k = fm_kernels_uncounted();
    if (elem == sizeof(double)) return k->f64.tile ? k->f64.nr : 0;
    return k->f32.tile ? k->f32.nr : 0;
}

void fm_blocking_info(int f64, int *mr, int *nr, int *kc, int *mc) {
    const fm_kernel_set *k = fm_kernels_uncounted();
    const size_t size = f64 ? sizeof(double) : sizeof(float);
    *mr = f64 ? k->f64.mr : k->f32.mr;
    *nr = f64 ? k->f64.nr : k->f32.nr;
    *kc = fm_block_k(*nr, size);
    *mc = fm_block_rows(*mr, *kc, size);
}

size_t fm_panels_offset(const fm_net *net, int l, size_t elem) {
    const size_t nr = (size_t)fm_panel_width_of(elem);
    size_t off = 0;
    for (int k = 0; k < l; k++)
        off += (size_t)net->sizes[k] * ((net->sizes[k + 1] + nr - 1) / nr) * nr;
    return off;
}

size_t fm_packed_weights_count(const fm_net *net, size_t elem) {
    return fm_panel_width_of(elem) ? fm_panels_offset(net, net->n_layers, elem) : 0;
}

/* fm_pack_weights_f32 / _f64: each layer's panels as packed_product packs them */
#define PACK_WEIGHTS(SFX, T)                                                                  \
    void fm_pack_weights_##SFX(const fm_net *net, const T *params, T *panels) {               \
        const int nr = fm_panel_width_of(sizeof(T));                                           \
        if (!nr) return;                                                                       \
        for (int l = 0; l < net->n_layers; l++) {                                              \
            const int I = net->sizes[l], O = net->sizes[l + 1];                                \
            const T *W = params + fm_weight_offset(net, l);                                    \
            T *dst = panels + fm_panels_offset(net, l, sizeof(T));                             \
            for (int j0 = 0; j0 < O; j0 += nr, dst += (size_t)I * nr)                          \
                pack_panel_##SFX(dst, nr, W, O, I, j0, O - j0 < nr ? O - j0 : nr, NULL);       \
        }                                                                                      \
    }
PACK_WEIGHTS(f32, float)
PACK_WEIGHTS(f64, double)
