/* SPDX-License-Identifier: MIT */
/*
 * AMX tile configuration, as ldtilecfg reads it (palette 1: 8 tiles of up
 * to 16 rows of 64 bytes). The kernels ask for the tiles' state first:
 * kernels_init's permission (arch_prctl ARCH_REQ_XCOMP_PERM).
 */
#pragma once

#include <stdint.h>

struct amx_tile_config {
        uint8_t palette;
        uint8_t start_row;
        uint8_t reserved[14];
        uint16_t colsb[16]; /* bytes per row of each tile */
        uint8_t rows[16];
} __attribute__((packed, aligned(64)));

_Static_assert(sizeof(struct amx_tile_config) == 64, "ldtilecfg reads 64 bytes");
