// SPDX-License-Identifier: MIT
/*
 * libnpu: generic netlink family "npu" (device dump, events) over libnl.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>

#include <linux/npu_genl.h>

#include "npu.h"

struct npu_nl {
	struct nl_sock *sock;	/* requests */
	struct nl_sock *ev;	/* events, NULL until subscribed */
	int family;
};

static int npu_nl_err(int nlerr)
{
	switch (-nlerr) {
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_PERM:
		return -EPERM;
	default:
		return -EIO;
	}
}

int npu_nl_open(struct npu_nl **ret_nl)
{
	struct npu_nl *nl;
	int r;

	nl = calloc(1, sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	nl->sock = nl_socket_alloc();
	if (!nl->sock) {
		free(nl);
		return -ENOMEM;
	}
	/* Replies carry the answer; errors still come back without acks. */
	nl_socket_disable_auto_ack(nl->sock);
	r = genl_connect(nl->sock);
	if (r < 0)
		goto err;
	nl->family = genl_ctrl_resolve(nl->sock, NPU_GENL_NAME);
	if (nl->family < 0) {
		r = nl->family;
		goto err;
	}
	*ret_nl = nl;
	return 0;
err:
	nl_socket_free(nl->sock);
	free(nl);
	return npu_nl_err(r);
}

void npu_nl_close(struct npu_nl *nl)
{
	if (!nl)
		return;
	if (nl->ev)
		nl_socket_free(nl->ev);
	nl_socket_free(nl->sock);
	free(nl);
}

static struct nla_policy npu_nl_policy[NPU_GENL_A_MAX + 1] = {
	[NPU_GENL_A_DEV_INDEX] = { .type = NLA_U32 },
	[NPU_GENL_A_DEV_NAME] = { .type = NLA_STRING },
	[NPU_GENL_A_ACCEL_MINOR] = { .type = NLA_U32 },
	[NPU_GENL_A_NUM_ENGINES] = { .type = NLA_U32 },
	[NPU_GENL_A_JOBS_SUBMITTED] = { .type = NLA_U64 },
	[NPU_GENL_A_JOBS_COMPLETED] = { .type = NLA_U64 },
	[NPU_GENL_A_JOBS_FAILED] = { .type = NLA_U64 },
	[NPU_GENL_A_JOBS_TIMEDOUT] = { .type = NLA_U64 },
	[NPU_GENL_A_RESETS] = { .type = NLA_U64 },
	[NPU_GENL_A_BUSY_NS] = { .type = NLA_U64 },
	[NPU_GENL_A_BO_BYTES] = { .type = NLA_U64 },
	[NPU_GENL_A_BO_COUNT] = { .type = NLA_U32 },
	[NPU_GENL_A_CTX_COUNT] = { .type = NLA_U32 },
	[NPU_GENL_A_EVENT] = { .type = NLA_U32 },
	[NPU_GENL_A_CTX_ID] = { .type = NLA_U32 },
	[NPU_GENL_A_SEQNO] = { .type = NLA_U64 },
	[NPU_GENL_A_PID] = { .type = NLA_U32 },
	[NPU_GENL_A_CLIENT_ID] = { .type = NLA_U64 },
};

struct npu_nl_dump {
	struct npu_nl_device *devs;
	size_t max;
	size_t n;
};

static uint32_t npu_nl_u32(struct nlattr **tb, int a)
{
	return tb[a] ? nla_get_u32(tb[a]) : 0;
}

static uint64_t npu_nl_u64(struct nlattr **tb, int a)
{
	return tb[a] ? nla_get_u64(tb[a]) : 0;
}

static int npu_nl_device_cb(struct nl_msg *msg, void *arg)
{
	struct npu_nl_dump *d = arg;
	struct nlattr *tb[NPU_GENL_A_MAX + 1];
	struct npu_nl_device *dev;

	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, NPU_GENL_A_MAX, npu_nl_policy) < 0)
		return NL_SKIP;
	if (d->n >= d->max) {
		d->n++;
		return NL_OK;
	}
	dev = &d->devs[d->n++];
	memset(dev, 0, sizeof(*dev));
	dev->index = npu_nl_u32(tb, NPU_GENL_A_DEV_INDEX);
	dev->accel_minor = npu_nl_u32(tb, NPU_GENL_A_ACCEL_MINOR);
	dev->num_engines = npu_nl_u32(tb, NPU_GENL_A_NUM_ENGINES);
	dev->bo_count = npu_nl_u32(tb, NPU_GENL_A_BO_COUNT);
	dev->ctx_count = npu_nl_u32(tb, NPU_GENL_A_CTX_COUNT);
	if (tb[NPU_GENL_A_DEV_NAME]) {
		strncpy(dev->name, nla_get_string(tb[NPU_GENL_A_DEV_NAME]),
			sizeof(dev->name) - 1);
	}
	dev->jobs_submitted = npu_nl_u64(tb, NPU_GENL_A_JOBS_SUBMITTED);
	dev->jobs_completed = npu_nl_u64(tb, NPU_GENL_A_JOBS_COMPLETED);
	dev->jobs_failed = npu_nl_u64(tb, NPU_GENL_A_JOBS_FAILED);
	dev->jobs_timedout = npu_nl_u64(tb, NPU_GENL_A_JOBS_TIMEDOUT);
	dev->resets = npu_nl_u64(tb, NPU_GENL_A_RESETS);
	dev->busy_ns = npu_nl_u64(tb, NPU_GENL_A_BUSY_NS);
	dev->bo_bytes = npu_nl_u64(tb, NPU_GENL_A_BO_BYTES);
	return NL_OK;
}

static int npu_nl_query(struct npu_nl *nl, int dump, uint32_t index,
			struct npu_nl_dump *d)
{
	struct nl_msg *msg;
	int r;

	msg = nlmsg_alloc();
	if (!msg)
		return -ENOMEM;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, nl->family, 0,
			 dump ? NLM_F_DUMP : 0, NPU_GENL_CMD_GET_DEVICE,
			 NPU_GENL_VERSION) ||
	    (!dump && nla_put_u32(msg, NPU_GENL_A_DEV_INDEX, index) < 0)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	nl_socket_modify_cb(nl->sock, NL_CB_VALID, NL_CB_CUSTOM,
			    npu_nl_device_cb, d);
	r = nl_send_auto(nl->sock, msg);
	nlmsg_free(msg);
	if (r < 0)
		return npu_nl_err(r);
	r = nl_recvmsgs_default(nl->sock);
	if (r < 0)
		return npu_nl_err(r);
	return 0;
}

int npu_nl_get_devices(struct npu_nl *nl, struct npu_nl_device *devs,
		       size_t max, size_t *ret_n)
{
	struct npu_nl_dump d = { .devs = devs, .max = max };
	int r;

	r = npu_nl_query(nl, 1, 0, &d);
	if (r == 0)
		*ret_n = d.n;
	return r;
}

int npu_nl_get_device(struct npu_nl *nl, uint32_t index,
		      struct npu_nl_device *dev)
{
	struct npu_nl_dump d = { .devs = dev, .max = 1 };
	int r;

	r = npu_nl_query(nl, 0, index, &d);
	if (r == 0 && d.n != 1)
		r = -ENODEV;
	return r;
}

static int npu_nl_seq_ok(struct nl_msg *msg, void *arg)
{
	return NL_OK;
}

static int npu_nl_subscribe(struct npu_nl *nl, const char *group)
{
	int grp, r;

	if (nl->ev)
		return -EBUSY;
	grp = genl_ctrl_resolve_grp(nl->sock, NPU_GENL_NAME, group);
	if (grp < 0)
		return npu_nl_err(grp);
	nl->ev = nl_socket_alloc();
	if (!nl->ev)
		return -ENOMEM;
	nl_socket_disable_seq_check(nl->ev);
	nl_socket_modify_cb(nl->ev, NL_CB_SEQ_CHECK, NL_CB_CUSTOM,
			    npu_nl_seq_ok, NULL);
	r = genl_connect(nl->ev);
	if (r == 0)
		r = nl_socket_add_membership(nl->ev, grp);
	if (r < 0) {
		nl_socket_free(nl->ev);
		nl->ev = NULL;
		return npu_nl_err(r);
	}
	return 0;
}

int npu_nl_subscribe_events(struct npu_nl *nl)
{
	return npu_nl_subscribe(nl, NPU_GENL_MCGRP_EVENTS);
}

int npu_nl_subscribe_owner_events(struct npu_nl *nl)
{
	return npu_nl_subscribe(nl, NPU_GENL_MCGRP_EVENTS_ADMIN);
}

int npu_nl_fd(struct npu_nl *nl)
{
	return nl->ev ? nl_socket_get_fd(nl->ev) : -EINVAL;
}

struct npu_nl_evrecv {
	struct npu_nl_event *ev;
	int got;
};

static int npu_nl_event_cb(struct nl_msg *msg, void *arg)
{
	struct npu_nl_evrecv *e = arg;
	struct nlattr *tb[NPU_GENL_A_MAX + 1];
	struct genlmsghdr *gh = nlmsg_data(nlmsg_hdr(msg));

	if (gh->cmd != NPU_GENL_CMD_EVENT ||
	    genlmsg_parse(nlmsg_hdr(msg), 0, tb, NPU_GENL_A_MAX, npu_nl_policy) < 0)
		return NL_SKIP;
	if (e->got)
		return NL_SKIP;
	memset(e->ev, 0, sizeof(*e->ev));
	e->ev->event = npu_nl_u32(tb, NPU_GENL_A_EVENT);
	e->ev->dev_index = npu_nl_u32(tb, NPU_GENL_A_DEV_INDEX);
	e->ev->ctx_id = npu_nl_u32(tb, NPU_GENL_A_CTX_ID);
	e->ev->pid = npu_nl_u32(tb, NPU_GENL_A_PID);
	e->ev->seqno = npu_nl_u64(tb, NPU_GENL_A_SEQNO);
	e->ev->client_id = npu_nl_u64(tb, NPU_GENL_A_CLIENT_ID);
	e->got = 1;
	return NL_OK;
}

int npu_nl_recv_event(struct npu_nl *nl, int timeout_ms,
		      struct npu_nl_event *ev)
{
	struct npu_nl_evrecv e = { .ev = ev };
	struct pollfd pfd;
	int r;

	if (!nl->ev)
		return -EINVAL;
	nl_socket_modify_cb(nl->ev, NL_CB_VALID, NL_CB_CUSTOM,
			    npu_nl_event_cb, &e);
	while (!e.got) {
		pfd.fd = nl_socket_get_fd(nl->ev);
		pfd.events = POLLIN;
		r = poll(&pfd, 1, timeout_ms);
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIME;
		r = nl_recvmsgs_default(nl->ev);
		if (r < 0)
			return npu_nl_err(r);
	}
	return 0;
}
