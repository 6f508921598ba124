/*
 * crc32c.h - CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of journal records.
 *
 * crc32c() uses the SSE4.2 crc32 instruction when the CPU has one (decided
 * once at start-up, so the build needs no -msse4.2), else a slicing-by-8
 * table.  The value is the standard one: pre- and post-inverted, so
 * crc32c(0, "123456789", 9) == 0xE3069283, and a checksum can be continued:
 * crc32c(crc32c(0, a, n), b, m) is the checksum of a then b.
 * No function allocates, fails or keeps the buffer.
 */
#ifndef FERRY_BROKER_CRC32C_H
#define FERRY_BROKER_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, exported so that tests can check both. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* 1 if crc32c_hw() may be called on this CPU, else 0. */
int crc32c_hw_available(void);
/* Only when crc32c_hw_available(); elsewhere it is crc32c_sw(). */
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);

#endif
