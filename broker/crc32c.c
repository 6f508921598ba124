/*
 * crc32c.c - CRC32C with a runtime choice between the SSE4.2 instruction and
 * a slicing-by-8 table (see crc32c.h).
 */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82F63B78u	/* Castagnoli, bit-reflected */

/* table[k][b]: CRC of byte b followed by k zero bytes; filled once at start */
static uint32_t table[8][256];

static uint32_t (*impl)(uint32_t, const void *, size_t) = crc32c_sw;

/*
 * A constructor rather than a check on every call: the tables and the
 * choice are fixed before main(), so the hot path is one indirect call.
 */
static void crc32c_init(void) __attribute__((constructor));

static void
crc32c_init(void)
{
	uint32_t c;
	int b, k;

	for (b = 0; b < 256; b++) {
		c = (uint32_t)b;
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
		table[0][b] = c;
	}
	for (b = 0; b < 256; b++) {
		c = table[0][b];
		for (k = 1; k < 8; k++) {
			c = (c >> 8) ^ table[0][c & 0xff];
			table[k][b] = c;
		}
	}
	if (crc32c_hw_available())
		impl = crc32c_hw;
}

uint32_t
crc32c(uint32_t crc, const void *buf, size_t len)
{
	return impl(crc, buf, len);
}

uint32_t
crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t w;

	crc = ~crc;
	while (len >= 8) {
		/* the table order below assumes a little-endian load */
		memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		w = __builtin_bswap64(w);
#endif
		w ^= crc;
		crc = table[7][w & 0xff] ^
		    table[6][(w >> 8) & 0xff] ^
		    table[5][(w >> 16) & 0xff] ^
		    table[4][(w >> 24) & 0xff] ^
		    table[3][(w >> 32) & 0xff] ^
		    table[2][(w >> 40) & 0xff] ^
		    table[1][(w >> 48) & 0xff] ^
		    table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__)

int
crc32c_hw_available(void)
{
	/* constructors may run before libgcc has probed the CPU */
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

__attribute__((target("sse4.2"))) uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc, w;

	/* unaligned 8-byte loads are cheap on x86; no head loop needed */
	while (len >= 8) {
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

#else

int
crc32c_hw_available(void)
{
	return 0;
}

uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}

#endif
