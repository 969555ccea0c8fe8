/* cpuinfo.h — what the engine knows of the CPU it runs on (cpuinfo.c): vendor, family and
 * model, and the data-cache sizes, read with cpuid (Linux sysfs as a fallback); and the
 * matrix-product blocking derived from them (dense_impl.h reads it). */
#ifndef FASTMLP_CPUINFO_H
#define FASTMLP_CPUINFO_H

#include <stddef.h>

typedef struct {
    char vendor[13];          /* cpuid's vendor string ("AuthenticAMD"), "" when unknown */
    int family, model;        /* display family and model (Zen 4 EPYC: 25, 17); -1 unknown */
    long l1d, l2, l3;         /* data-cache bytes: L1d and L2 of one core, L3 as a whole;
                                 0 when unknown */
    int cache_source;         /* where the sizes came from: FM_CACHE_* */
} fm_cpu_info;

enum { FM_CACHE_DEFAULT = 0, FM_CACHE_CPUID = 1, FM_CACHE_SYSFS = 2 };

/* The most of L3 a span of rows may fill (fm_block_span): an L3 is shared by many cores,
 * and a VM may report more than it has (an Intel Xeon VM's cpuid: 480 MiB). */
#define FM_SPAN_L3_MAX (8L << 20)

/* Sizes assumed when neither cpuid nor sysfs tells (typical of x86 cores since 2015). */
#define FM_DEFAULT_L1D (32L << 10)
#define FM_DEFAULT_L2 (256L << 10)

/* The CPU, read once (the first call; later calls return the same record). */
const fm_cpu_info *fm_cpu_info_get(void);

/* Whether the optimizer update runs inside the weight-gradient products by default (1) or
 * in a separate pass after the backward pass (0): off on AMD and Hygon cores, on elsewhere.
 * Measured, not derived (RESULTS.md, sessions 9 and 10; results are bitwise the same either
 * way): on an Intel Xeon (AVX-512, 2 MiB L2) Adam's update is bound by its division and
 * square root, and the fused update made batch-32 epochs 1.03-1.12x as fast; on a Zen 5 EPYC
 * (1 MiB L2) the update streams its four arrays from memory, and cutting that stream into
 * register-tile pieces made them 0.92x (float32) and 0.73-0.84x (float64) as fast. */
int fm_fused_update_default(void);

/* K-block of the register-tile products: the depth kc of the slice of a packed panel
 * (kc x nr elements of elem_size bytes) that one pass over a group of row tiles reads; a
 * multiple of 8 in [64, 4096]. Panels of two-vector AVX-512 rows (128 bytes and more): the
 * slice fills a quarter of L2, the panel streaming from L2 while the rows of the left
 * operand and the tile's output stay in L1 (on an Intel Xeon, 2 MiB L2, 3-7 % faster epochs
 * than slices of half of L1d, which split a 784-deep product into 4 blocks, each reloading
 * the tiles' outputs). Narrower rows (the AVX2 tiles, 64 bytes) keep half of L1d: the whole
 * K from L2 made their epochs 3-4 % slower on that Xeon (within noise on a Zen 4). A
 * forced value (fm_blocking_force) wins. Products with K <= kc are not split. */
int fm_block_k(int nr, size_t elem_size);
/* Rows of the left operand that share one packed panel (a work item of packed_product):
 * at most FM_PACK_GROUP (kernels.h) and at most what fits half of L2 in rows of kc
 * elements, rounded down to a multiple of the tile's mr rows (no partial tile inside a
 * group: 64 rows of 6-row tiles ended each group with a 4-row tile), at least mr. A forced
 * value wins. */
int fm_block_rows(int mr, int kc, size_t elem_size);
/* Rows of the left operand, whole K of them, that a product of a (K, N) right operand runs
 * through all its panels before it goes on to the next rows (K elements of elem_size bytes
 * a row), rounded down to a multiple of the row group mc, at least mc. Where the span reads
 * the panels from L3 (panels made beforehand: prepacked != 0, and K x N within a quarter
 * of L3), what fits half of L2: larger spans would stream the left operand from L3 once
 * per panel. Where every span reads them from memory (packing them again, a strided read
 * of the weights, or prepacked panels larger than that), what fits a quarter of L3, at most
 * FM_SPAN_L3_MAX, when L3's size is known: the weights from memory cost more than the
 * span's rows from L3 once a panel (on a Zen 5 EPYC, 1 MiB L2, 32 MiB L3:
 * 784-2048-2048-2048-10 at batch 512, spans of 64 rows -> 512, epochs 1.37x as fast;
 * 784-512-256-10 at batch 2048, 1.14x; predict of 10,000 rows of 784-512-256-10 with L3's
 * spans 0.95-1.0x, hence L2's there). A forced value wins. */
int fm_block_span(int mc, int K, int N, size_t elem_size, int prepacked);
/* Force kc, mc and the span's rows (before rounding to mc) (tests; 0: derive again).
 * Values are not range-checked here: the Python boundary does that. Results never depend
 * on them (every tile accumulates its k-blocks in order into its output). */
void fm_blocking_force(int kc, int mc, int span);
/* 1 when kc is forced (the products then use exactly kc, not equal blocks). */
int fm_blocking_forced(void);

#endif
