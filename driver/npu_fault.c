// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu fault injection: the kernel's fault_attr (debugfs fail_hang/ and
 * fail_bo_alloc/, see Documentation/fault-injection) where the kernel has
 * fault-injection debugfs; elsewhere the driver's own one-shot switches
 * (debugfs inject_hang, inject_alloc_fail).
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/debugfs.h>
#include <linux/fault-inject.h>

#include "npu_drv.h"

void npu_fault_init(struct npu_device *ndev)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	ndev->fail_hang = (struct fault_attr)FAULT_ATTR_INITIALIZER;
	ndev->fail_bo_alloc = (struct fault_attr)FAULT_ATTR_INITIALIZER;
#endif
}

void npu_fault_debugfs(struct npu_device *ndev, struct dentry *root)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	fault_create_debugfs_attr("fail_hang", root, &ndev->fail_hang);
	fault_create_debugfs_attr("fail_bo_alloc", root, &ndev->fail_bo_alloc);
#else
	debugfs_create_atomic_t("inject_hang", 0600, root, &ndev->inject_hang);
	debugfs_create_atomic_t("inject_alloc_fail", 0600, root,
				&ndev->inject_alloc_fail);
#endif
}

/**
 * npu_fault_hang - should this job hang until the timeout resets the engine?
 * @ndev: device
 *
 * Called from run_job: allocates nothing.
 *
 * Return: true to hang it.
 */
bool npu_fault_hang(struct npu_device *ndev)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	return should_fail(&ndev->fail_hang, 1);
#else
	return atomic_xchg(&ndev->inject_hang, 0);
#endif
}

/**
 * npu_fault_bo_alloc - should this BO_CREATE fail with -ENOMEM?
 * @ndev: device
 * @size: size of the BO
 *
 * Return: true to fail it.
 */
bool npu_fault_bo_alloc(struct npu_device *ndev, size_t size)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	return should_fail(&ndev->fail_bo_alloc, size);
#else
	return atomic_xchg(&ndev->inject_alloc_fail, 0);
#endif
}
