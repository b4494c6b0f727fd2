// SPDX-License-Identifier: MIT
/*
 * libnpu: xclbin images with an IP_LAYOUT section naming the npu ops,
 * written and read with XRT's own structs (xrt/xclbin.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xrt/xclbin.h>

#include "npu.h"

static const char *const npu_op_names[NPU_OPS_KNOWN] = NPU_OP_NAMES;

const char *npu_op_name(uint32_t opcode)
{
	if (opcode == 0 || opcode >= NPU_OPS_KNOWN)
		return NULL;
	return npu_op_names[opcode];
}

int npu_xclbin_build(uint64_t ops_mask, void **ret_img, size_t *ret_size)
{
	struct axlf *ax;
	struct ip_layout *ipl;
	size_t nips = 0, ipl_size, size;
	uint32_t op;
	int i = 0;

	for (op = 1; op < NPU_OPS_KNOWN; op++)
		if (ops_mask & (1ull << op))
			nips++;
	ipl_size = offsetof(struct ip_layout, m_ip_data) +
		(nips ? nips : 1) * sizeof(struct ip_data);
	size = sizeof(struct axlf) + ipl_size;
	ax = calloc(1, size);
	if (!ax)
		return -ENOMEM;

	memcpy(ax->m_magic, "xclbin2", 8);
	ax->m_signature_length = -1;
	memset(ax->reserved, 0xff, sizeof(ax->reserved));
	ax->m_header.m_length = size;
	ax->m_header.m_versionMajor = 2;
	ax->m_header.m_numSections = 1;
	strcpy((char *)ax->m_header.m_platformVBNV, "npud:npu:sw:1.0");
	ax->m_sections[0].m_sectionKind = IP_LAYOUT;
	strcpy(ax->m_sections[0].m_sectionName, "ip_layout");
	ax->m_sections[0].m_sectionOffset = sizeof(struct axlf);
	ax->m_sections[0].m_sectionSize = ipl_size;

	ipl = (struct ip_layout *)((char *)ax + sizeof(struct axlf));
	ipl->m_count = (int32_t)nips;
	for (op = 1; op < NPU_OPS_KNOWN; op++) {
		struct ip_data *ip;

		if (!(ops_mask & (1ull << op)))
			continue;
		ip = &ipl->m_ip_data[i];
		ip->m_type = IP_KERNEL;
		ip->m_base_address = 0x10000ull * (uint64_t)(i + 1);
		strcpy((char *)ip->m_name, "npu_");
		strcat((char *)ip->m_name, npu_op_names[op]);
		strcat((char *)ip->m_name, ":cu0");
		i++;
	}
	*ret_img = ax;
	*ret_size = size;
	return 0;
}

int npu_xclbin_parse(const void *img, size_t size, uint64_t *ret_ops_mask)
{
	const struct axlf *ax = img;
	uint64_t mask = 0;
	uint32_t s;
	int found = 0;

	if (size < sizeof(struct axlf) || memcmp(ax->m_magic, "xclbin2", 8) ||
	    ax->m_header.m_length != size || ax->m_header.m_numSections == 0 ||
	    ax->m_header.m_numSections >
		    (size - offsetof(struct axlf, m_sections)) /
		    sizeof(struct axlf_section_header))
		return -EINVAL;

	for (s = 0; s < ax->m_header.m_numSections; s++) {
		const struct axlf_section_header *sh = &ax->m_sections[s];
		const struct ip_layout *ipl;
		int32_t j;

		if (sh->m_sectionKind != IP_LAYOUT)
			continue;
		if (sh->m_sectionOffset > size ||
		    sh->m_sectionSize > size - sh->m_sectionOffset ||
		    sh->m_sectionSize < offsetof(struct ip_layout, m_ip_data))
			return -EINVAL;
		ipl = (const struct ip_layout *)((const char *)img + sh->m_sectionOffset);
		if (ipl->m_count < 0 ||
		    (uint64_t)ipl->m_count >
			    (sh->m_sectionSize - offsetof(struct ip_layout, m_ip_data)) /
			    sizeof(struct ip_data))
			return -EINVAL;
		for (j = 0; j < ipl->m_count; j++) {
			const struct ip_data *ip = &ipl->m_ip_data[j];
			char name[sizeof(ip->m_name) + 1];
			char *colon;
			uint32_t op;

			if (ip->m_type != IP_KERNEL)
				continue;
			memcpy(name, ip->m_name, sizeof(ip->m_name));
			name[sizeof(ip->m_name)] = '\0';
			colon = strchr(name, ':');
			if (colon)
				*colon = '\0';
			if (strncmp(name, "npu_", 4))
				continue;
			for (op = 1; op < NPU_OPS_KNOWN; op++)
				if (!strcmp(name + 4, npu_op_names[op]))
					mask |= 1ull << op;
		}
		found = 1;
	}
	if (!found)
		return -EINVAL;
	*ret_ops_mask = mask;
	return 0;
}
