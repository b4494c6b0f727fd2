/* SPDX-License-Identifier: MIT */
/*
 * PropertiesChanged for every property that changes, and the object
 * manager's InterfacesAdded and InterfacesRemoved for models and devices.
 * After anything happened (a bus message, a step), the properties of every
 * object are compared with what was last published, at most once per 50 ms:
 * a signal carries the latest values of what changed since.
 *
 * Who hears what:
 *   Manager: DefaultModel, Backends, KVCacheBlocksTotal: everyone
 *            (broadcast). KVCacheBlocksUsed, ActiveRequests, QueuedRequests
 *            count the caller's own uid (the whole server for an
 *            administrator): a connection that read one of them hears of
 *            their changes, in a signal sent to it alone, with its own values.
 *   Model and Device objects: everyone (broadcast), with InterfacesAdded
 *            when one appears and InterfacesRemoved when it goes.
 *   Request and Session objects: their owner alone.
 */
#pragma once

#include <sys/types.h>

struct server;

int bus_changes_new(struct server *srv);
void bus_changes_free(struct server *srv);
/* The connection name (of uid) read a per-caller Manager property: it hears of their changes from now on. */
void bus_changes_watch(struct server *srv, const char *name, uid_t uid);
/* Publish now what changed (also while the loop is held up: a model loading). */
void bus_changes_publish(struct server *srv);
