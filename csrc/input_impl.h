/* Template: included by input.c through instantiate.h. */

#ifdef FM_REAL_IS_FLOAT
#define FM_IN_NATIVE FM_IN_F32
#else
#define FM_IN_NATIVE FM_IN_F64
#endif

/* dst (I) = dst * scale + shift, elementwise: the input transform (in->scale not NULL) */
static void FN(transform_row)(real *restrict dst, const fm_input *in, int I) {
    const real *scale = (const real *)in->scale, *shift = (const real *)in->shift;
    for (int j = 0; j < I; j++) dst[j] = dst[j] * scale[j] + shift[j];
}

/* dst (I) = stored row `row` of the input, converted to real and transformed */
static void FN(convert_row)(real *restrict dst, const fm_input *in, int64_t row, int I) {
    const char *src = (const char *)in->data + row * in->row_stride;
#define CONVERT(T)                                                                              \
    do {                                                                                        \
        T v;                                                                                    \
        for (int j = 0; j < I; j++) {                                                           \
            memcpy(&v, src + (size_t)j * sizeof(T), sizeof(T));                                 \
            dst[j] = (real)v;                                                                   \
        }                                                                                       \
    } while (0)
    switch (in->type) {
    case FM_IN_NATIVE: memcpy(dst, src, (size_t)I * sizeof(real)); break;
#ifdef FM_REAL_IS_FLOAT
    case FM_IN_F64: CONVERT(double); break;
#else
    case FM_IN_F32: CONVERT(float); break;
#endif
    case FM_IN_F16: {
        uint16_t h;
        for (int j = 0; j < I; j++) {
            memcpy(&h, src + (size_t)j * 2, 2);
            dst[j] = (real)half_to_float(h);
        }
        break;
    }
    case FM_IN_U8: CONVERT(uint8_t); break;
    case FM_IN_I8: CONVERT(int8_t); break;
    case FM_IN_U16: CONVERT(uint16_t); break;
    case FM_IN_I16: CONVERT(int16_t); break;
    case FM_IN_I32: CONVERT(int32_t); break;
    default: break; /* the boundary admits only the types above */
    }
#undef CONVERT
    if (in->scale) FN(transform_row)(dst, in, I);
}

/* Xb (B, I) <- the input transform of `in` applied to rows already converted (as
 * convert_row applies it: the same operations, so the same bits); nothing without one */
void FN(fm_input_transform)(real *Xb, const fm_input *in, int B, int I) {
    for (int i = 0; in->scale && i < B; i++) FN(transform_row)(Xb + (size_t)i * I, in, I);
}

/* Xb (B, I) = data-set rows idx[0..B) of the input (rows first .. first+B-1 when idx is
 * NULL), converted and transformed; the threads share the rows when there are enough. */
void FN(fm_input_rows)(real *Xb, const fm_input *in, const int64_t *idx, int64_t first, int B,
                       int I, int nt) {
    const int par = nt > 1 && B > 1 && (size_t)B * I >= (size_t)FM_GATHER_MIN_WORK;
    const fm_fpteam ft = fm_fp_team(); /* each thread in this one's mode (fpenv.h) */
#pragma omp parallel num_threads(nt) if (par)
    {
        const fm_fpenv had = fm_fp_join(ft);
#pragma omp for schedule(static) nowait
        for (int i = 0; i < B; i++) {
            int64_t r = idx ? idx[i] : first + i;
            if (in->rows) r = in->rows[r];
            FN(convert_row)(Xb + (size_t)i * I, in, r, I);
        }
        fm_fp_part(ft, had);
    }
}

/* Data-set rows first .. first+B-1 as the net reads them (B, I): in place where they need
 * no conversion, no transform and no row selection and lie contiguous; else converted
 * into Xb (B, I). */
const real *FN(fm_input_block)(real *Xb, const fm_input *in, int64_t first, int B, int I,
                               int nt) {
    if (in->type == FM_IN_NATIVE && !in->scale && !in->rows &&
        in->row_stride == (int64_t)I * (int64_t)sizeof(real))
        return (const real *)in->data + (size_t)first * I;
    FN(fm_input_rows)(Xb, in, NULL, first, B, I, nt);
    return Xb;
}

#undef FM_IN_NATIVE
