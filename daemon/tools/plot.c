/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "cli.h"
#include "plot.h"

static const char *const colors[PLOT_MAX_SERIES] = {
        "#2471a3", "#c0392b", "#27ae60", "#8e44ad", "#d68910", "#17a589", "#5d6d7e", "#cb4335",
};

/* Text with XML's special characters escaped (labels carry model names from files). */
static void put_text(FILE *f, const char *s)
{
        for (; *s; s++)
                switch (*s) {
                case '<': fputs("&lt;", f); break;
                case '>': fputs("&gt;", f); break;
                case '&': fputs("&amp;", f); break;
                case '"': fputs("&quot;", f); break;
                default: fputc(*s, f);
                }
}

/* Panel geometry: the plotting area of panel i. */
#define PANEL_W 420.0
#define PANEL_H 320.0
#define MARGIN_L 64.0
#define MARGIN_R 20.0
#define MARGIN_T 44.0
#define MARGIN_B 52.0

/* A step of 1, 2 or 5 times a power of ten giving about `want` ticks over [0, max]. */
static double nice_step(double max, int want)
{
        double raw = max / want, p = pow(10, floor(log10(raw))), m = raw / p;
        return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static void fmt_value(char *buf, size_t n, double v, double step)
{
        int decimals = step >= 1 ? 0 : (int)ceil(-log10(step));
        snprintf(buf, n, "%.*f", MIN(decimals, 6), v);
}

struct axis {
        double lo, hi; /* data range shown */
        bool log2;
};

static double axis_pos(const struct axis *a, double v, double len)
{
        if (a->log2)
                return len * (log2(v) - log2(a->lo)) / (log2(a->hi) - log2(a->lo));
        return len * (v - a->lo) / (a->hi - a->lo);
}

static void panel(FILE *f, const struct plot *p, int pi, double ox)
{
        const double x0 = ox + MARGIN_L, y0 = MARGIN_T + PANEL_H, w = PANEL_W, h = PANEL_H;
        struct axis ax = { .lo = INFINITY, .hi = -INFINITY, .log2 = p->x_log2 }, ay = { .lo = 0, .hi = 0 };
        char buf[32];

        for (int s = 0; s < p->n_series; s++)
                for (int i = 0; i < p->series[s].n; i++) {
                        ax.lo = fmin(ax.lo, p->series[s].x[i]);
                        ax.hi = fmax(ax.hi, p->series[s].x[i]);
                        ay.hi = fmax(ay.hi, p->series[s].y[pi][i]);
                }
        if (!(ax.hi > ax.lo)) {
                ax.lo = ax.log2 ? ax.lo / 2 : ax.lo - 1;
                ax.hi = ax.log2 ? ax.hi * 2 : ax.hi + 1;
        }
        if (ax.log2 && ax.lo <= 0)
                ax.log2 = false;
        const double ystep = nice_step(ay.hi > 0 ? ay.hi : 1, 6);
        ay.hi = ystep * ceil((ay.hi > 0 ? ay.hi : 1) / ystep);

        /* axes, y grid and ticks */
        fprintf(f, "<g font-size=\"11\">\n");
        for (double v = 0; v <= ay.hi + ystep / 2; v += ystep) {
                double y = y0 - axis_pos(&ay, v, h);
                fmt_value(buf, sizeof(buf), v, ystep);
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x0 + w, y);
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0 - 5, y, x0, y);
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", x0 - 8, y + 4, buf);
        }
        /* x ticks: the powers of two in range (log scale), else 1-2-5 steps */
        if (ax.log2) {
                for (double v = exp2(ceil(log2(ax.lo))); v <= ax.hi * 1.0001; v *= 2) {
                        double x = x0 + axis_pos(&ax, v, w);
                        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, y0, x,
                                y0 + 5);
                        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n", x, y0 + 18, v);
                }
        } else {
                const double xstep = nice_step(ax.hi - ax.lo, 6);
                for (double v = ceil(ax.lo / xstep) * xstep; v <= ax.hi + xstep / 1000; v += xstep) {
                        double x = x0 + axis_pos(&ax, v, w);
                        fmt_value(buf, sizeof(buf), v, xstep);
                        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, y0, x,
                                y0 + 5);
                        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, y0 + 18, buf);
                }
        }
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, y0, x0 + w, y0);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, y0, x0, y0 - h);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x0 + w / 2, y0 + 38);
        put_text(f, p->x_label);
        fprintf(f, "%s</text>\n", ax.log2 ? " (log scale)" : "");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x0, MARGIN_T - 10);
        put_text(f, p->y_label[pi]);
        fprintf(f, "</text>\n");
        fprintf(f, "</g>\n");

        /* a line and a marked point per measurement, per series */
        for (int s = 0; s < p->n_series; s++) {
                const struct plot_series *se = &p->series[s];
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s]);
                for (int i = 0; i < se->n; i++)
                        fprintf(f, "%.1f,%.1f ", x0 + axis_pos(&ax, se->x[i], w), y0 - axis_pos(&ay, se->y[pi][i], h));
                fprintf(f, "\"/>\n");
                for (int i = 0; i < se->n; i++) {
                        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>",
                                x0 + axis_pos(&ax, se->x[i], w), y0 - axis_pos(&ay, se->y[pi][i], h), colors[s]);
                        put_text(f, se->label);
                        fprintf(f, ": %g, %g</title></circle>\n", se->x[i], se->y[pi][i]);
                }
        }
}

int plot_write_svg(const struct plot *p, const char *path)
{
        const double pw = MARGIN_L + PANEL_W + MARGIN_R, height = MARGIN_T + PANEL_H + MARGIN_B + 22.0 * p->n_series + 16;
        _cleanup_fclose_ FILE *f = fopen(path, "we");

        if (!f)
                return cli_error(-errno, "cannot write %s: %m", path);
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\">\n",
                pw * p->n_panels, height + 10);
        fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
        fprintf(f, "<text x=\"%.0f\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">", pw * p->n_panels / 2);
        put_text(f, p->title);
        fprintf(f, "</text>\n");
        for (int i = 0; i < p->n_panels; i++)
                panel(f, p, i, i * pw);
        /* legend, under the panels */
        for (int s = 0; s < p->n_series; s++) {
                double y = MARGIN_T + PANEL_H + MARGIN_B + 8 + 22.0 * s;
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                        MARGIN_L, y, MARGIN_L + 30, y, colors[s]);
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", MARGIN_L + 15, y, colors[s]);
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", MARGIN_L + 38, y + 4);
                put_text(f, p->series[s].label);
                fprintf(f, "</text>\n");
        }
        fprintf(f, "</svg>\n");
        if (fflush(f) != 0 || ferror(f))
                return cli_error(-EIO, "writing %s failed", path);
        return 0;
}
