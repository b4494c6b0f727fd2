/* SPDX-License-Identifier: MIT */
/*
 * A model on its way in: from LoadModel (or a request naming a model of
 * models_dir) until it is served, it is on the bus as its Model object with
 * State "loading" and the progress of reading its file (BytesLoaded,
 * BytesTotal), which the loader thread writes as it reads.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct server;

/* What a Model object stands for: a served model (its struct model_keep), or a loading one. */
struct model_object {
        bool loading;
};

struct model_loading {
        struct model_object obj; /* first: the Model object's userdata */
        struct model_loading *next;
        struct server *srv;
        char *name;
        char *path;
        _Atomic uint64_t done, total; /* bytes of the file read, its size */
};

int model_loading_new(struct server *srv, const char *name, const char *path, struct model_loading **ret);
/* Unlinks and frees it (NULL: nothing). */
void model_loading_free(struct model_loading *l);
struct model_loading *model_loading_find(struct server *srv, const char *name);
/* The engine's progress callback (runtime_opts.progress), on the loader thread. */
void model_loading_progress(uint64_t done, uint64_t total, void *userdata);
