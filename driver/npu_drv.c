// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu: DRM accel driver with a software execution engine.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/dma-mapping.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/pm_runtime.h>
#include <linux/slab.h>

#include <drm/drm_accel.h>
#include <drm/drm_drv.h>
#include <drm/drm_gem.h>
#include <drm/drm_ioctl.h>
#include <drm/drm_print.h>

#include "npu_drv.h"

static unsigned int npu_num_devices = 1;
module_param_named(num_devices, npu_num_devices, uint, 0444);
MODULE_PARM_DESC(num_devices, "Number of software npu devices to create (1-8)");

unsigned int npu_job_timeout_ms = 2000;
module_param_named(job_timeout_ms, npu_job_timeout_ms, uint, 0444);
MODULE_PARM_DESC(job_timeout_ms, "Job timeout in ms before the engine is reset");

static struct platform_device *npu_pdevs[NPU_MAX_DEVICES];

static int npu_ioctl_get_info(struct drm_device *dev, void *data,
			      struct drm_file *file)
{
	struct drm_npu_get_info *args = data;
	int idx;

	if (args->flags || args->pad || args->pad2)
		return -EINVAL;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	args->version_major = NPU_UAPI_MAJOR;
	args->version_minor = NPU_UAPI_MINOR;
	args->num_engines = 1;
	args->max_ops_per_cmd = NPU_MAX_OPS;
	args->max_in_syncobjs = NPU_MAX_IN_SYNCOBJS;
	args->max_contexts = NPU_MAX_CONTEXTS;
	args->fence_window = NPU_FENCE_WINDOW;
	args->ops_mask = NPU_OPS_ALL;
	args->max_bo_size = NPU_MAX_BO_SIZE;
	args->max_bo_handles = NPU_MAX_BO_HANDLES;

	drm_dev_exit(idx);
	return 0;
}

static void npu_file_stats_release(struct kref *ref)
{
	kfree(container_of(ref, struct npu_file_stats, ref));
}

void npu_file_stats_put(struct npu_file_stats *stats)
{
	kref_put(&stats->ref, npu_file_stats_release);
}

static int npu_open(struct drm_device *dev, struct drm_file *file)
{
	struct npu_device *ndev = to_npu_device(dev);
	struct npu_file *nfile;
	int ret;

	nfile = kzalloc(sizeof(*nfile), GFP_KERNEL);
	if (!nfile)
		return -ENOMEM;
	nfile->stats = kzalloc(sizeof(*nfile->stats), GFP_KERNEL);
	if (!nfile->stats) {
		ret = -ENOMEM;
		goto err_free;
	}
	kref_init(&nfile->stats->ref);
	nfile->ndev = ndev;
	nfile->pid = task_tgid_nr(current);

	ret = npu_ctx_file_init(nfile);
	if (ret)
		goto err_free_stats;

	file->driver_priv = nfile;
	return 0;

err_free_stats:
	kfree(nfile->stats);
err_free:
	kfree(nfile);
	return ret;
}

static void npu_postclose(struct drm_device *dev, struct drm_file *file)
{
	struct npu_file *nfile = file->driver_priv;

	npu_ctx_file_fini(nfile);
	npu_file_stats_put(nfile->stats);
	kfree(nfile);
}

/* fdinfo: the file's BOs and the engine time of its jobs (drm-usage-stats). */
static void npu_show_fdinfo(struct drm_printer *p, struct drm_file *file)
{
	struct npu_file *nfile = file->driver_priv;

	drm_show_memory_stats(p, file);
	drm_printf(p, "drm-engine-npu:\t%llu ns\n",
		   (u64)atomic64_read(&nfile->stats->busy_ns));
}

static const struct drm_ioctl_desc npu_ioctls[] = {
	DRM_IOCTL_DEF_DRV(NPU_GET_INFO, npu_ioctl_get_info, 0),
	DRM_IOCTL_DEF_DRV(NPU_BO_CREATE, npu_ioctl_bo_create, 0),
	DRM_IOCTL_DEF_DRV(NPU_BO_INFO, npu_ioctl_bo_info, 0),
	DRM_IOCTL_DEF_DRV(NPU_BO_SYNC, npu_ioctl_bo_sync, 0),
	DRM_IOCTL_DEF_DRV(NPU_CTX_CREATE, npu_ioctl_ctx_create, 0),
	DRM_IOCTL_DEF_DRV(NPU_CTX_DESTROY, npu_ioctl_ctx_destroy, 0),
	DRM_IOCTL_DEF_DRV(NPU_CTX_CONFIGURE, npu_ioctl_ctx_configure, 0),
	DRM_IOCTL_DEF_DRV(NPU_CTX_QUERY, npu_ioctl_ctx_query, 0),
	DRM_IOCTL_DEF_DRV(NPU_SUBMIT, npu_ioctl_submit, 0),
	DRM_IOCTL_DEF_DRV(NPU_WAIT, npu_ioctl_wait, 0),
};

/* Every close() of the file: a bounded wait for its queued jobs. */
static int npu_flush(struct file *filp, fl_owner_t id)
{
	struct drm_file *file = filp->private_data;

	npu_ctx_file_flush(file->driver_priv);
	return 0;
}

static const struct file_operations npu_fops = {
	.owner = THIS_MODULE,
	DRM_ACCEL_FOPS,
	.flush = npu_flush,
	.show_fdinfo = drm_show_fdinfo,
};

static const struct drm_driver npu_drm_driver = {
	.driver_features = DRIVER_GEM | DRIVER_COMPUTE_ACCEL | DRIVER_SYNCOBJ |
			   DRIVER_SYNCOBJ_TIMELINE,
	.open = npu_open,
	.postclose = npu_postclose,
	.show_fdinfo = npu_show_fdinfo,
	.gem_create_object = npu_gem_create_object,
	.gem_prime_import_sg_table = npu_gem_prime_import_sg_table,
	.ioctls = npu_ioctls,
	.num_ioctls = ARRAY_SIZE(npu_ioctls),
	.fops = &npu_fops,
	.name = NPU_DRIVER_NAME,
	.desc = "NPU accelerator (software engine)",
	.major = NPU_UAPI_MAJOR,
	.minor = NPU_UAPI_MINOR,
};

static int npu_probe(struct platform_device *pdev)
{
	struct npu_device *ndev;
	int ret;

	ndev = devm_drm_dev_alloc(&pdev->dev, &npu_drm_driver,
				  struct npu_device, drm);
	if (IS_ERR(ndev))
		return PTR_ERR(ndev);

	/* For dma-buf attachments of other devices to our BOs. */
	ret = dma_coerce_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;

	ndev->pdev = pdev;
	ndev->index = pdev->id;
	INIT_LIST_HEAD(&ndev->node);
	spin_lock_init(&ndev->fence_lock);
	init_waitqueue_head(&ndev->idle_wq);
	npu_genl_device_init(ndev);
	npu_fault_init(ndev);
	npu_dump_init(ndev);
	platform_set_drvdata(pdev, ndev);

	ndev->engine_ops = &npu_sw_engine_ops;
	ret = ndev->engine_ops->init(ndev);
	if (ret) {
		drm_err(&ndev->drm, "Failed to init engine: %d\n", ret);
		return ret;
	}

	ret = npu_sched_init(ndev);
	if (ret) {
		drm_err(&ndev->drm, "Failed to init scheduler: %d\n", ret);
		goto err_engine_fini;
	}

	/*
	 * Runtime PM: every job holds a reference from submit to free; the
	 * engine suspends once idle for NPU_AUTOSUSPEND_MS.
	 */
	pm_runtime_set_active(&pdev->dev);
	pm_runtime_set_autosuspend_delay(&pdev->dev, NPU_AUTOSUSPEND_MS);
	pm_runtime_use_autosuspend(&pdev->dev);
	ret = devm_pm_runtime_enable(&pdev->dev);
	if (ret)
		goto err_sched_fini;
	pm_runtime_mark_last_busy(&pdev->dev);
	pm_request_autosuspend(&pdev->dev);

	npu_debugfs_init(ndev);

	ret = drm_dev_register(&ndev->drm, 0);
	if (ret) {
		drm_err(&ndev->drm, "Failed to register device: %d\n", ret);
		goto err_sched_fini;
	}

	npu_genl_device_add(ndev);
	return 0;

err_sched_fini:
	npu_sched_fini(ndev);
err_engine_fini:
	ndev->engine_ops->fini(ndev);
	return ret;
}

static void npu_remove(struct platform_device *pdev)
{
	struct npu_device *ndev = platform_get_drvdata(pdev);

	npu_genl_device_remove(ndev);
	drm_dev_unplug(&ndev->drm);

	/* Jobs of closed files may still be retiring. */
	if (!wait_event_timeout(ndev->idle_wq,
				!atomic_read(&ndev->cnt.jobs_alive), 30 * HZ))
		drm_warn(&ndev->drm, "%d jobs still alive at removal\n",
			 atomic_read(&ndev->cnt.jobs_alive));

	npu_sched_fini(ndev);
	/* Awake, and kept so until runtime PM is disabled after remove. */
	pm_runtime_get_sync(&pdev->dev);
	ndev->engine_ops->fini(ndev);
	npu_genl_device_fini(ndev);
	npu_dump_fini(ndev);
}

static int npu_runtime_suspend(struct device *dev)
{
	struct npu_device *ndev = dev_get_drvdata(dev);

	return ndev->engine_ops->suspend(ndev);
}

static int npu_runtime_resume(struct device *dev)
{
	struct npu_device *ndev = dev_get_drvdata(dev);

	return ndev->engine_ops->resume(ndev);
}

static const struct dev_pm_ops npu_pm_ops = {
	RUNTIME_PM_OPS(npu_runtime_suspend, npu_runtime_resume, NULL)
};

static struct platform_driver npu_platform_driver = {
	.probe = npu_probe,
	.remove = npu_remove,
	.driver = {
		.name = NPU_DRIVER_NAME,
		.dev_groups = npu_sysfs_groups,
		.pm = pm_ptr(&npu_pm_ops),
		/* Devices go away only with the module, never with open files. */
		.suppress_bind_attrs = true,
	},
};

static void npu_destroy_devices(void)
{
	int i;

	for (i = NPU_MAX_DEVICES - 1; i >= 0; i--) {
		if (npu_pdevs[i])
			platform_device_unregister(npu_pdevs[i]);
		npu_pdevs[i] = NULL;
	}
}

static int __init npu_init(void)
{
	unsigned int i;
	int ret;

	if (!npu_num_devices || npu_num_devices > NPU_MAX_DEVICES) {
		pr_err("npu: num_devices must be 1-%d\n", NPU_MAX_DEVICES);
		return -EINVAL;
	}
	if (!npu_job_timeout_ms)
		npu_job_timeout_ms = 1;

	ret = npu_genl_register();
	if (ret) {
		pr_err("npu: Failed to register netlink family: %d\n", ret);
		return ret;
	}

	ret = platform_driver_register(&npu_platform_driver);
	if (ret) {
		pr_err("npu: Failed to register platform driver: %d\n", ret);
		goto err_genl_unregister;
	}

	for (i = 0; i < npu_num_devices; i++) {
		struct platform_device *pdev;

		pdev = platform_device_register_simple(NPU_DRIVER_NAME, i, NULL, 0);
		if (IS_ERR(pdev)) {
			ret = PTR_ERR(pdev);
			pr_err("npu: Failed to create device %u: %d\n", i, ret);
			goto err_destroy_devices;
		}
		npu_pdevs[i] = pdev;
	}
	return 0;

err_destroy_devices:
	npu_destroy_devices();
	platform_driver_unregister(&npu_platform_driver);
err_genl_unregister:
	npu_genl_unregister();
	return ret;
}

static void __exit npu_exit(void)
{
	npu_destroy_devices();
	platform_driver_unregister(&npu_platform_driver);
	npu_genl_unregister();
}

module_init(npu_init);
module_exit(npu_exit);

MODULE_DESCRIPTION("NPU DRM accel driver with a software execution engine");
MODULE_AUTHOR("The npud authors");
MODULE_LICENSE("GPL");
