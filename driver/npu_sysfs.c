// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu sysfs attributes on the platform device (read only):
 * num_engines, accel_minor, jobs_submitted, jobs_completed, jobs_failed,
 * jobs_timedout, resets, busy_ns, bo_count, bo_bytes, ctx_count.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/device.h>
#include <linux/sysfs.h>

#include <drm/drm_accel.h>
#include <drm/drm_file.h>

#include "npu_drv.h"

#define NPU_ATTR_ATOMIC64(_name, _field)				\
static ssize_t _name##_show(struct device *dev,				\
			    struct device_attribute *attr, char *buf)	\
{									\
	struct npu_device *ndev = dev_get_drvdata(dev);			\
									\
	return sysfs_emit(buf, "%lld\n",				\
			  atomic64_read(&ndev->cnt._field));		\
}									\
static DEVICE_ATTR_RO(_name)

#define NPU_ATTR_ATOMIC(_name, _field)					\
static ssize_t _name##_show(struct device *dev,				\
			    struct device_attribute *attr, char *buf)	\
{									\
	struct npu_device *ndev = dev_get_drvdata(dev);			\
									\
	return sysfs_emit(buf, "%d\n", atomic_read(&ndev->cnt._field));	\
}									\
static DEVICE_ATTR_RO(_name)

NPU_ATTR_ATOMIC64(jobs_submitted, jobs_submitted);
NPU_ATTR_ATOMIC64(jobs_completed, jobs_completed);
NPU_ATTR_ATOMIC64(jobs_failed, jobs_failed);
NPU_ATTR_ATOMIC64(jobs_timedout, jobs_timedout);
NPU_ATTR_ATOMIC64(resets, resets);
NPU_ATTR_ATOMIC64(busy_ns, busy_ns);
NPU_ATTR_ATOMIC64(bo_bytes, bo_bytes);
NPU_ATTR_ATOMIC(bo_count, bo_count);
NPU_ATTR_ATOMIC(ctx_count, ctx_count);

static ssize_t num_engines_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "1\n");
}
static DEVICE_ATTR_RO(num_engines);

static ssize_t accel_minor_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	struct npu_device *ndev = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%d\n", ndev->drm.accel->index);
}
static DEVICE_ATTR_RO(accel_minor);

static struct attribute *npu_attrs[] = {
	&dev_attr_num_engines.attr,
	&dev_attr_accel_minor.attr,
	&dev_attr_jobs_submitted.attr,
	&dev_attr_jobs_completed.attr,
	&dev_attr_jobs_failed.attr,
	&dev_attr_jobs_timedout.attr,
	&dev_attr_resets.attr,
	&dev_attr_busy_ns.attr,
	&dev_attr_bo_count.attr,
	&dev_attr_bo_bytes.attr,
	&dev_attr_ctx_count.attr,
	NULL,
};

static const struct attribute_group npu_attr_group = {
	.attrs = npu_attrs,
};

const struct attribute_group *npu_sysfs_groups[] = {
	&npu_attr_group,
	NULL,
};
