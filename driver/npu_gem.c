// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu buffer objects: shmem GEM objects kept mapped in the kernel for the
 * engine.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/iosys-map.h>
#include <linux/slab.h>

#include <drm/drm_drv.h>
#include <drm/drm_gem.h>
#include <drm/drm_print.h>
#include <drm/drm_vma_manager.h>

#include "npu_drv.h"

static void npu_gem_free(struct drm_gem_object *obj)
{
	struct npu_device *ndev = to_npu_device(obj->dev);
	struct npu_bo *bo = to_npu_bo(obj);

	if (bo->vaddr) {
		struct iosys_map map = IOSYS_MAP_INIT_VADDR(bo->vaddr);

		drm_gem_vunmap_unlocked(obj, &map);
		bo->vaddr = NULL;
		atomic64_sub(obj->size, &ndev->cnt.bo_bytes);
		atomic_dec(&ndev->cnt.bo_count);
	}
	drm_gem_shmem_free(&bo->base);
}

/* BOs stay mapped, so their pages stay resident (fdinfo). */
static enum drm_gem_object_status npu_gem_status(struct drm_gem_object *obj)
{
	return DRM_GEM_OBJECT_RESIDENT;
}

static const struct drm_gem_object_funcs npu_gem_funcs = {
	.free = npu_gem_free,
	.status = npu_gem_status,
	.print_info = drm_gem_shmem_object_print_info,
	.pin = drm_gem_shmem_object_pin,
	.unpin = drm_gem_shmem_object_unpin,
	.get_sg_table = drm_gem_shmem_object_get_sg_table,
	.vmap = drm_gem_shmem_object_vmap,
	.vunmap = drm_gem_shmem_object_vunmap,
	.mmap = drm_gem_shmem_object_mmap,
	.vm_ops = &drm_gem_shmem_vm_ops,
};

struct drm_gem_object *npu_gem_create_object(struct drm_device *dev, size_t size)
{
	struct npu_bo *bo;

	bo = kzalloc(sizeof(*bo), GFP_KERNEL);
	if (!bo)
		return ERR_PTR(-ENOMEM);

	bo->base.base.funcs = &npu_gem_funcs;
	bo->base.map_wc = false;
	return &bo->base.base;
}

/*
 * Only BOs of this driver are supported: the engine needs a kernel mapping
 * for the whole life of the BO. PRIME import of our own dma-bufs returns the
 * original object and never gets here.
 */
struct drm_gem_object *npu_gem_prime_import_sg_table(struct drm_device *dev,
						     struct dma_buf_attachment *attach,
						     struct sg_table *sgt)
{
	return ERR_PTR(-EOPNOTSUPP);
}

/**
 * npu_bo_lookup - look up a BO of this driver by handle
 * @file: DRM file
 * @handle: GEM handle
 *
 * Return: the BO with a reference held, or NULL.
 */
struct npu_bo *npu_bo_lookup(struct drm_file *file, u32 handle)
{
	struct drm_gem_object *obj;

	obj = drm_gem_object_lookup(file, handle);
	if (!obj)
		return NULL;
	if (obj->funcs != &npu_gem_funcs || !to_npu_bo(obj)->vaddr) {
		drm_gem_object_put(obj);
		return NULL;
	}
	return to_npu_bo(obj);
}

int npu_ioctl_bo_create(struct drm_device *dev, void *data, struct drm_file *file)
{
	struct npu_device *ndev = to_npu_device(dev);
	struct drm_npu_bo_create *args = data;
	struct drm_gem_shmem_object *shmem;
	struct iosys_map map;
	struct npu_bo *bo;
	u32 handle;
	int ret, idx;

	if (args->flags)
		return -EINVAL;
	if (!args->size)
		return -EINVAL;
	if (args->size > NPU_MAX_BO_SIZE)
		return -E2BIG;

	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	if (npu_fault_bo_alloc(ndev, args->size)) {
		ret = -ENOMEM;
		goto err_exit;
	}

	shmem = drm_gem_shmem_create(dev, PAGE_ALIGN(args->size));
	if (IS_ERR(shmem)) {
		ret = PTR_ERR(shmem);
		goto err_exit;
	}
	bo = container_of(shmem, struct npu_bo, base);

	ret = drm_gem_vmap_unlocked(&shmem->base, &map);
	if (ret)
		goto err_put;
	if (map.is_iomem) {
		drm_gem_vunmap_unlocked(&shmem->base, &map);
		ret = -EINVAL;
		goto err_put;
	}
	bo->vaddr = map.vaddr;
	atomic64_add(shmem->base.size, &ndev->cnt.bo_bytes);
	atomic_inc(&ndev->cnt.bo_count);

	ret = drm_gem_create_mmap_offset(&shmem->base);
	if (ret)
		goto err_put;

	ret = drm_gem_handle_create(file, &shmem->base, &handle);
	if (ret)
		goto err_put;

	/* The handle holds the reference now. */
	drm_gem_object_put(&shmem->base);
	args->handle = handle;
	drm_dev_exit(idx);
	return 0;

err_put:
	drm_gem_object_put(&shmem->base);
err_exit:
	drm_dev_exit(idx);
	return ret;
}

int npu_ioctl_bo_info(struct drm_device *dev, void *data, struct drm_file *file)
{
	struct drm_npu_bo_info *args = data;
	struct npu_bo *bo;
	int idx;

	if (args->pad)
		return -EINVAL;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	bo = npu_bo_lookup(file, args->handle);
	if (!bo) {
		drm_dev_exit(idx);
		return -ENOENT;
	}
	args->size = bo->base.base.size;
	args->mmap_offset = drm_vma_node_offset_addr(&bo->base.base.vma_node);
	drm_gem_object_put(&bo->base.base);

	drm_dev_exit(idx);
	return 0;
}

int npu_ioctl_bo_sync(struct drm_device *dev, void *data, struct drm_file *file)
{
	struct drm_npu_bo_sync *args = data;
	struct npu_bo *bo;
	u64 end;
	int ret = 0, idx;

	if (args->flags & ~NPU_BO_SYNC_FLAGS_MASK)
		return -EINVAL;
	if (hweight32(args->flags) != 1 || !args->size)
		return -EINVAL;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	bo = npu_bo_lookup(file, args->handle);
	if (!bo) {
		ret = -ENOENT;
		goto out_exit;
	}
	if (check_add_overflow(args->offset, args->size, &end) ||
	    end > bo->base.base.size) {
		ret = -EINVAL;
		goto out_put;
	}

	/* The software engine shares the cpu's coherent view of memory. */
	mb();

out_put:
	drm_gem_object_put(&bo->base.base);
out_exit:
	drm_dev_exit(idx);
	return ret;
}
