/* SPDX-License-Identifier: MIT */
/*
 * SVG charts of benchmark series: panels side by side, each with its axes,
 * ticks and values, one marked point per measurement and a line per series,
 * and a legend. No dependency: the tools write the SVG text themselves.
 */
#pragma once

#include <stdbool.h>

#define PLOT_MAX_POINTS 32
#define PLOT_MAX_SERIES 8
#define PLOT_MAX_PANELS 3

struct plot_series {
        char label[96];
        int n;
        double x[PLOT_MAX_POINTS];
        double y[PLOT_MAX_PANELS][PLOT_MAX_POINTS];
};

struct plot {
        const char *title;
        const char *x_label;   /* "prompt length (tokens)" */
        bool x_log2;           /* x on a base-2 log scale (prompt lengths that double) */
        int n_panels;
        const char *y_label[PLOT_MAX_PANELS];
        int n_series;
        struct plot_series series[PLOT_MAX_SERIES];
};

/* Writes p to path; 0, or a negative errno (with a message on stderr). */
int plot_write_svg(const struct plot *p, const char *path);
