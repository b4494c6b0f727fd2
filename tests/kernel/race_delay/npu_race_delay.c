// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu_race_delay: a test module that makes a scheduler race of drm_sched
 * likely enough to test. It stalls drm_sched_entity_pop_job() on entry
 * for delay_us microseconds (a module parameter, 0 by default: off): the
 * entity has been chosen, but no job taken from it yet. A CTX_DESTROY
 * that tears the entity down in that window lets the scheduler put the
 * entity back into its run queue, unless the driver keeps the scheduler
 * from popping meanwhile (npu_sched_entity_fini). The destroy_storm test
 * turns it on while it runs.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/delay.h>
#include <linux/kprobes.h>
#include <linux/module.h>

static unsigned int delay_us;
module_param(delay_us, uint, 0600);
MODULE_PARM_DESC(delay_us, "Microseconds drm_sched_entity_pop_job() stalls on entry (0: off)");

static int npu_race_delay_pre(struct kprobe *p, struct pt_regs *regs)
{
	unsigned int us = READ_ONCE(delay_us);

	if (us)
		udelay(min(us, 2000u));
	return 0;
}

static struct kprobe npu_race_delay_probe = {
	.symbol_name = "drm_sched_entity_pop_job",
	.pre_handler = npu_race_delay_pre,
};

static int __init npu_race_delay_init(void)
{
	return register_kprobe(&npu_race_delay_probe);
}

static void __exit npu_race_delay_exit(void)
{
	unregister_kprobe(&npu_race_delay_probe);
}

module_init(npu_race_delay_init);
module_exit(npu_race_delay_exit);
MODULE_DESCRIPTION("npu tests: stalls drm_sched_entity_pop_job() to widen a race");
MODULE_LICENSE("GPL");
