// SPDX-License-Identifier: MIT
/*
 * The host's TSC frequency in kHz, measured against CLOCK_MONOTONIC_RAW
 * over 200 ms. Under QEMU's TCG the guest reads the host's TSC, and a
 * guest that calibrates it on a loaded host can get it several times too
 * low, so that its clock (and every timeout) runs several times too fast:
 * tests/kernel/run passes this value as tsc_early_khz instead.
 */
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC_RAW, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void)
{
	struct timespec nap = { 0, 200000000 };
	unsigned long long c0, c1;
	double t0, t1;

	t0 = now();
	c0 = __rdtsc();
	nanosleep(&nap, NULL);
	c1 = __rdtsc();
	t1 = now();
	printf("%.0f\n", (double)(c1 - c0) / (t1 - t0) / 1000);
	return 0;
}
