/* instantiate.h — compile the template named by FM_TEMPLATE once per dtype:
 * `real` = float with FN(name) = name_f32 (and FM_REAL_IS_FLOAT defined), then
 * `real` = double with FN(name) = name_f64. Each .c file of a templated concern is
 *     #define FM_TEMPLATE "concern_impl.h"
 *     #include "instantiate.h"                                                     */
#define real float
#define FN(name) name##_f32
#define FM_REAL_IS_FLOAT
#include FM_TEMPLATE
#undef FM_REAL_IS_FLOAT
#undef real
#undef FN

#define real double
#define FN(name) name##_f64
#include FM_TEMPLATE
#undef real
#undef FN
