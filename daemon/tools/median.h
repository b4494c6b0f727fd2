/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdlib.h>

static inline int median_cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* The median of x[0..n) (sorted in place; of an even count, the mean of the middle two), 0 for none. */
static inline double median_of(double *x, int n)
{
        if (n == 0)
                return 0;
        qsort(x, (size_t)n, sizeof(double), median_cmp_double);
        return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}
