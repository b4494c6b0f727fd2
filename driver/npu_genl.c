// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu generic netlink family: device queries with counters and an
 * "events" multicast group.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/list.h>
#include <linux/mutex.h>
#include <net/genetlink.h>

#include <drm/drm_accel.h>
#include <drm/drm_file.h>
#include <drm/drm_print.h>
#include <linux/npu_genl.h>

#include "npu_drv.h"

/* Protects npu_dev_list. */
static DEFINE_MUTEX(npu_dev_lock);
static LIST_HEAD(npu_dev_list);

enum {
	NPU_GENL_MCGRP_EVENTS_IDX,
	NPU_GENL_MCGRP_EVENTS_ADMIN_IDX,
};

/*
 * "events" is open to every local user: its events name a context's owner
 * by its DRM client id, which only the owner (and who may read its fdinfo)
 * can tie to a process. "events-admin" adds the owner's pid.
 */
static const struct genl_multicast_group npu_genl_mcgrps[] = {
	[NPU_GENL_MCGRP_EVENTS_IDX] = { .name = NPU_GENL_MCGRP_EVENTS },
	[NPU_GENL_MCGRP_EVENTS_ADMIN_IDX] = {
		.name = NPU_GENL_MCGRP_EVENTS_ADMIN,
		.flags = GENL_MCAST_CAP_NET_ADMIN,
	},
};

static const struct nla_policy npu_genl_policy[NPU_GENL_A_MAX + 1] = {
	[NPU_GENL_A_DEV_INDEX] = { .type = NLA_U32 },
};

static struct genl_family npu_genl_family;

static int npu_genl_fill_device(struct sk_buff *skb, struct npu_device *ndev,
				u32 portid, u32 seq, int flags)
{
	struct npu_counters *c = &ndev->cnt;
	void *hdr;

	hdr = genlmsg_put(skb, portid, seq, &npu_genl_family, flags,
			  NPU_GENL_CMD_GET_DEVICE);
	if (!hdr)
		return -EMSGSIZE;

	if (nla_put_u32(skb, NPU_GENL_A_DEV_INDEX, ndev->index) ||
	    nla_put_string(skb, NPU_GENL_A_DEV_NAME, dev_name(ndev->drm.dev)) ||
	    nla_put_u32(skb, NPU_GENL_A_ACCEL_MINOR, ndev->drm.accel->index) ||
	    nla_put_u32(skb, NPU_GENL_A_NUM_ENGINES, 1) ||
	    nla_put_u64_64bit(skb, NPU_GENL_A_JOBS_SUBMITTED,
			      atomic64_read(&c->jobs_submitted), NPU_GENL_A_PAD) ||
	    nla_put_u64_64bit(skb, NPU_GENL_A_JOBS_COMPLETED,
			      atomic64_read(&c->jobs_completed), NPU_GENL_A_PAD) ||
	    nla_put_u64_64bit(skb, NPU_GENL_A_JOBS_FAILED,
			      atomic64_read(&c->jobs_failed), NPU_GENL_A_PAD) ||
	    nla_put_u64_64bit(skb, NPU_GENL_A_JOBS_TIMEDOUT,
			      atomic64_read(&c->jobs_timedout), NPU_GENL_A_PAD) ||
	    nla_put_u64_64bit(skb, NPU_GENL_A_RESETS,
			      atomic64_read(&c->resets), NPU_GENL_A_PAD) ||
	    nla_put_u64_64bit(skb, NPU_GENL_A_BUSY_NS,
			      atomic64_read(&c->busy_ns), NPU_GENL_A_PAD) ||
	    nla_put_u64_64bit(skb, NPU_GENL_A_BO_BYTES,
			      atomic64_read(&c->bo_bytes), NPU_GENL_A_PAD) ||
	    nla_put_u32(skb, NPU_GENL_A_BO_COUNT, atomic_read(&c->bo_count)) ||
	    nla_put_u32(skb, NPU_GENL_A_CTX_COUNT, atomic_read(&c->ctx_count))) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

static int npu_genl_get_device_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct npu_device *ndev, *found = NULL;
	struct sk_buff *msg;
	u32 index;
	int ret;

	if (!info->attrs[NPU_GENL_A_DEV_INDEX])
		return -EINVAL;
	index = nla_get_u32(info->attrs[NPU_GENL_A_DEV_INDEX]);

	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;

	mutex_lock(&npu_dev_lock);
	list_for_each_entry(ndev, &npu_dev_list, node) {
		if (ndev->index == index) {
			found = ndev;
			break;
		}
	}
	ret = found ? npu_genl_fill_device(msg, found, info->snd_portid,
					   info->snd_seq, 0) : -ENODEV;
	mutex_unlock(&npu_dev_lock);

	if (ret) {
		nlmsg_free(msg);
		return ret;
	}
	return genlmsg_reply(msg, info);
}

static int npu_genl_get_device_dumpit(struct sk_buff *skb,
				      struct netlink_callback *cb)
{
	struct npu_device *ndev;
	long next = cb->args[0];
	int ret = 0;

	mutex_lock(&npu_dev_lock);
	list_for_each_entry(ndev, &npu_dev_list, node) {
		if (ndev->index < next)
			continue;
		ret = npu_genl_fill_device(skb, ndev, NETLINK_CB(cb->skb).portid,
					   cb->nlh->nlmsg_seq, NLM_F_MULTI);
		if (ret)
			break;
		next = ndev->index + 1;
	}
	mutex_unlock(&npu_dev_lock);
	cb->args[0] = next;
	/* A full skb ends this round; the dump goes on from next. */
	return skb->len;
}

static const struct genl_small_ops npu_genl_ops[] = {
	{
		.cmd = NPU_GENL_CMD_GET_DEVICE,
		.doit = npu_genl_get_device_doit,
		.dumpit = npu_genl_get_device_dumpit,
	},
};

static struct genl_family npu_genl_family __ro_after_init = {
	.name = NPU_GENL_NAME,
	.version = NPU_GENL_VERSION,
	.maxattr = NPU_GENL_A_MAX,
	.policy = npu_genl_policy,
	.module = THIS_MODULE,
	.small_ops = npu_genl_ops,
	.n_small_ops = ARRAY_SIZE(npu_genl_ops),
	.resv_start_op = NPU_GENL_CMD_GET_DEVICE,
	.mcgrps = npu_genl_mcgrps,
	.n_mcgrps = ARRAY_SIZE(npu_genl_mcgrps),
};

int npu_genl_register(void)
{
	return genl_register_family(&npu_genl_family);
}

void npu_genl_unregister(void)
{
	genl_unregister_family(&npu_genl_family);
}

/* One event to one group; the pid only where the group may see it. */
static void npu_genl_send(struct npu_device *ndev, const struct npu_event *ev,
			  unsigned int group)
{
	bool pid = group == NPU_GENL_MCGRP_EVENTS_ADMIN_IDX && ev->pid;
	struct sk_buff *skb;
	void *hdr;

	skb = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!skb)
		return;
	hdr = genlmsg_put(skb, 0, 0, &npu_genl_family, 0, NPU_GENL_CMD_EVENT);
	if (!hdr)
		goto err_free;
	if (nla_put_u32(skb, NPU_GENL_A_EVENT, ev->event) ||
	    nla_put_u32(skb, NPU_GENL_A_DEV_INDEX, ndev->index) ||
	    nla_put_string(skb, NPU_GENL_A_DEV_NAME, dev_name(ndev->drm.dev)) ||
	    (ev->ctx_id && nla_put_u32(skb, NPU_GENL_A_CTX_ID, ev->ctx_id)) ||
	    (ev->seqno && nla_put_u64_64bit(skb, NPU_GENL_A_SEQNO, ev->seqno,
					    NPU_GENL_A_PAD)) ||
	    (ev->ctx_id && nla_put_u64_64bit(skb, NPU_GENL_A_CLIENT_ID,
					     ev->client_id, NPU_GENL_A_PAD)) ||
	    (pid && nla_put_u32(skb, NPU_GENL_A_PID, ev->pid)))
		goto err_free;
	genlmsg_end(skb, hdr);
	/* -ESRCH only means nobody listens. */
	genlmsg_multicast(&npu_genl_family, skb, 0, group, GFP_KERNEL);
	return;

err_free:
	nlmsg_free(skb);
}

static void npu_genl_send_all(struct npu_device *ndev, const struct npu_event *ev)
{
	npu_genl_send(ndev, ev, NPU_GENL_MCGRP_EVENTS_IDX);
	npu_genl_send(ndev, ev, NPU_GENL_MCGRP_EVENTS_ADMIN_IDX);
}

static void npu_genl_event_work(struct work_struct *work)
{
	struct npu_events *q = container_of(work, struct npu_events, work);
	struct npu_device *ndev = container_of(q, struct npu_device, events);
	struct npu_event ev;
	u32 dropped;

	for (;;) {
		spin_lock_irq(&q->lock);
		if (!q->count) {
			dropped = q->dropped;
			q->dropped = 0;
			spin_unlock_irq(&q->lock);
			break;
		}
		ev = q->ring[q->head];
		q->head = (q->head + 1) % NPU_EVENT_RING;
		q->count--;
		spin_unlock_irq(&q->lock);
		npu_genl_send_all(ndev, &ev);
	}
	if (dropped)
		drm_warn(&ndev->drm, "%u netlink events dropped\n", dropped);
}

/**
 * npu_genl_event - queue an event for the event groups
 * @ndev: device
 * @event: an enum npu_genl_event value
 * @ctx: the context it concerns, or NULL
 * @seqno: job sequence number, or 0
 *
 * Allocates nothing: callable on the fence signalling path (a work item
 * builds and sends the messages).
 */
void npu_genl_event(struct npu_device *ndev, u32 event,
		    const struct npu_ctx *ctx, u64 seqno)
{
	struct npu_events *q = &ndev->events;
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	if (q->count < NPU_EVENT_RING) {
		q->ring[(q->head + q->count) % NPU_EVENT_RING] = (struct npu_event) {
			.event = event,
			.ctx_id = ctx ? ctx->id : 0,
			.seqno = seqno,
			.client_id = ctx ? ctx->client_id : 0,
			.pid = ctx ? ctx->pid : 0,
		};
		q->count++;
	} else {
		q->dropped++;
	}
	spin_unlock_irqrestore(&q->lock, flags);
	queue_work(system_wq, &q->work);
}

void npu_genl_device_init(struct npu_device *ndev)
{
	spin_lock_init(&ndev->events.lock);
	INIT_WORK(&ndev->events.work, npu_genl_event_work);
}

/* After the last job: no event is queued any more. */
void npu_genl_device_fini(struct npu_device *ndev)
{
	cancel_work_sync(&ndev->events.work);
}

void npu_genl_device_add(struct npu_device *ndev)
{
	mutex_lock(&npu_dev_lock);
	list_add_tail(&ndev->node, &npu_dev_list);
	mutex_unlock(&npu_dev_lock);
	npu_genl_send_all(ndev, &(struct npu_event){ .event = NPU_GENL_EVENT_DEVICE_ADDED });
}

void npu_genl_device_remove(struct npu_device *ndev)
{
	/* The events queued so far go out before this one. */
	flush_work(&ndev->events.work);
	npu_genl_send_all(ndev, &(struct npu_event){ .event = NPU_GENL_EVENT_DEVICE_REMOVED });
	mutex_lock(&npu_dev_lock);
	list_del_init(&ndev->node);
	mutex_unlock(&npu_dev_lock);
}
