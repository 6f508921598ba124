/*
 * frame.c - ferry wire framing: a 4-byte big-endian length, then the
 * payload.  See frame.h.
 */
#include "frame.h"

int
fy_frame_need(const uint8_t *buf, size_t len, size_t *need)
{
	uint32_t n;

	if (buf == NULL || len < FY_HDR_LEN)
		return FY_AGAIN;
	n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	    (uint32_t)buf[2] << 8 | (uint32_t)buf[3];
	/* An empty payload cannot hold the map every frame needs, and
	 * accepting it would let a peer spin us with 4-byte frames. */
	if (n == 0)
		return FY_EPROTO;
#if SIZE_MAX <= UINT32_MAX
	/* On 32-bit hosts the total would wrap; no buffer can hold it. */
	if (n > SIZE_MAX - FY_HDR_LEN)
		return FY_ETOOBIG;
#endif
	*need = (size_t)n + FY_HDR_LEN;
	return FY_OK;
}

void
fy_frame_put_len(uint8_t *dst, uint32_t len)
{
	dst[0] = (uint8_t)(len >> 24);
	dst[1] = (uint8_t)(len >> 16);
	dst[2] = (uint8_t)(len >> 8);
	dst[3] = (uint8_t)len;
}
