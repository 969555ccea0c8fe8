/* cpuinfo.c — the CPU's vendor, family/model and data-cache sizes, and the blocking of the
 * register-tile products derived from them (BLIS-style: the k-slice of a packed panel in
 * L1d, a group of row tiles' left-operand rows in L2).
 *
 * Cache sizes come from cpuid's deterministic cache leaves (AMD: 0x8000001D, Intel: 4),
 * then from Linux sysfs (/sys/devices/system/cpu/cpu0/cache/index*), then from
 * FM_DEFAULT_*. Every choice is derived: nothing is timed, so two runs on one machine
 * always block the same way (and results never depend on the blocking anyway). */
#include "cpuinfo.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FM_HAVE_CPUID 1
#endif

static fm_cpu_info info;
static pthread_once_t info_once = PTHREAD_ONCE_INIT;
static int forced_kc = 0, forced_mc = 0, forced_span = 0; /* read and written with relaxed
                            atomics: a test may force them while another thread trains */
#define LOAD_FORCED(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)

#ifdef FM_HAVE_CPUID
/* Bytes of the cache that cpuid leaf `leaf`, subleaf `sub` describes; its level and type
 * (1 data, 2 instruction, 3 unified, 0 none) in *level, *type. */
static long cpuid_cache(unsigned leaf, unsigned sub, int *level, int *type) {
    unsigned a, b, c, d;
    __cpuid_count(leaf, sub, a, b, c, d);
    *type = (int)(a & 31);
    *level = (int)((a >> 5) & 7);
    const long ways = (long)(b >> 22) + 1, parts = (long)((b >> 12) & 1023) + 1;
    const long line = (long)(b & 4095) + 1, sets = (long)c + 1;
    return ways * parts * line * sets;
}

static void read_cpuid(fm_cpu_info *ci) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    const unsigned max_leaf = a;
    memcpy(ci->vendor, &b, 4);
    memcpy(ci->vendor + 4, &d, 4);
    memcpy(ci->vendor + 8, &c, 4);
    ci->vendor[12] = 0;
    if (max_leaf >= 1) {
        __cpuid(1, a, b, c, d);
        const int base_family = (int)((a >> 8) & 15), base_model = (int)((a >> 4) & 15);
        ci->family = base_family == 15 ? base_family + (int)((a >> 20) & 255) : base_family;
        ci->model = base_family == 6 || base_family == 15
                        ? base_model + (int)(((a >> 16) & 15) << 4)
                        : base_model;
    }
    unsigned leaf = 0;
    if (!strcmp(ci->vendor, "AuthenticAMD") || !strcmp(ci->vendor, "HygonGenuine")) {
        __cpuid(0x80000000u, a, b, c, d);
        if (a >= 0x8000001Du) {
            __cpuid(0x80000001u, a, b, c, d);
            if (c & (1u << 22)) leaf = 0x8000001Du; /* topology extensions */
        }
    } else if (max_leaf >= 4) {
        leaf = 4;
    }
    if (!leaf) return;
    for (unsigned sub = 0; sub < 16; sub++) {
        int level, type;
        const long bytes = cpuid_cache(leaf, sub, &level, &type);
        if (type == 0) break;
        if (type == 2) continue; /* instruction cache */
        if (level == 1) ci->l1d = bytes;
        else if (level == 2) ci->l2 = bytes;
        else if (level == 3) ci->l3 = bytes;
    }
    if (ci->l1d > 0 && ci->l2 > 0) ci->cache_source = FM_CACHE_CPUID;
}
#endif

/* "32K", "1024K", "32M" (sysfs's size file) in bytes; 0 when unreadable */
static long sysfs_size(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long n = 0;
    char unit = 0;
    const int got = fscanf(f, "%ld%c", &n, &unit);
    fclose(f);
    if (got < 1 || n <= 0 || n > (1L << 30)) return 0;
    if (unit == 'K') return n << 10;
    if (unit == 'M') return n << 20;
    return n;
}

static void read_sysfs(fm_cpu_info *ci) {
    long l1d = 0, l2 = 0, l3 = 0;
    for (int i = 0; i < 16; i++) {
        char path[96], kind[32] = "";
        int level = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        const int ok = fscanf(f, "%d", &level) == 1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        f = fopen(path, "r");
        if (!f) continue;
        const int typed = fscanf(f, "%31s", kind) == 1;
        fclose(f);
        if (!ok || !typed || !strcmp(kind, "Instruction")) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        const long bytes = sysfs_size(path);
        if (level == 1) l1d = bytes;
        else if (level == 2) l2 = bytes;
        else if (level == 3) l3 = bytes;
    }
    if (l1d > 0 && l2 > 0) {
        ci->l1d = l1d;
        ci->l2 = l2;
        ci->l3 = l3;
        ci->cache_source = FM_CACHE_SYSFS;
    }
}

static void read_cpu(void) {
    fm_cpu_info ci = {.vendor = "", .family = -1, .model = -1};
#ifdef FM_HAVE_CPUID
    read_cpuid(&ci);
#endif
    if (ci.cache_source == FM_CACHE_DEFAULT) read_sysfs(&ci);
    if (ci.cache_source == FM_CACHE_DEFAULT) {
        ci.l1d = FM_DEFAULT_L1D;
        ci.l2 = FM_DEFAULT_L2;
        ci.l3 = 0;
    }
    info = ci;
}

const fm_cpu_info *fm_cpu_info_get(void) {
    pthread_once(&info_once, read_cpu);
    return &info;
}

int fm_fused_update_default(void) {
    const char *v = fm_cpu_info_get()->vendor;
    return strcmp(v, "AuthenticAMD") != 0 && strcmp(v, "HygonGenuine") != 0;
}

int fm_block_k(int nr, size_t elem_size) {
    const int forced = LOAD_FORCED(forced_kc);
    if (forced > 0) return forced;
    const fm_cpu_info *ci = fm_cpu_info_get();
    const long row = (long)nr * (long)elem_size; /* bytes of one panel row */
    const long fit = row >= 128 ? ci->l2 / 4 / row : ci->l1d / 2 / row;
    const long kc = fit / 8 * 8;
    return kc < 64 ? 64 : kc > 4096 ? 4096 : (int)kc;
}

int fm_block_rows(int mr, int kc, size_t elem_size) {
    const int forced = LOAD_FORCED(forced_mc);
    if (forced > 0) return forced;
    long rows = fm_cpu_info_get()->l2 / 2 / ((long)kc * (long)elem_size);
    if (rows > FM_PACK_GROUP) rows = FM_PACK_GROUP;
    rows = rows / mr * mr;
    return rows < mr ? mr : (int)rows;
}

int fm_block_span(int mc, int K, int N, size_t elem_size, int prepacked) {
    const fm_cpu_info *ci = fm_cpu_info_get();
    long room = ci->l2 / 2;
    const long l3_room = ci->l3 / 4 < FM_SPAN_L3_MAX ? ci->l3 / 4 : FM_SPAN_L3_MAX;
    if (ci->l3 > 0 && (!prepacked || (long)K * N * (long)elem_size > l3_room)) room = l3_room;
    const int forced = LOAD_FORCED(forced_span);
    long rows = forced > 0 ? forced : room / ((long)(K > 0 ? K : 1) * (long)elem_size);
    if (rows > (1L << 24)) rows = 1L << 24;
    rows = rows / mc * mc;
    return rows < mc ? mc : (int)rows;
}

void fm_blocking_force(int kc, int mc, int span) {
    __atomic_store_n(&forced_kc, kc, __ATOMIC_RELAXED);
    __atomic_store_n(&forced_mc, mc, __ATOMIC_RELAXED);
    __atomic_store_n(&forced_span, span, __ATOMIC_RELAXED);
}

int fm_blocking_forced(void) { return LOAD_FORCED(forced_kc) > 0; }
