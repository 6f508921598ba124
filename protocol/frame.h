/*
 * frame.h - ferry wire framing.
 *
 * A frame is a 4-byte big-endian payload length L (1 <= L), followed by L
 * bytes holding exactly one msgpack map.  Pure functions over bytes: no I/O,
 * no allocation, no globals.
 *
 * Return codes shared by everything in protocol/:
 *   FY_OK      0   success
 *   FY_AGAIN  >0   need more bytes (incomplete is not malformed)
 *   FY_E*     <0   error; see below
 */
#ifndef FERRY_PROTOCOL_FRAME_H
#define FERRY_PROTOCOL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FY_HDR_LEN 4

enum fy_result {
	FY_OK = 0,
	FY_AGAIN = 1,
	FY_EPROTO = -1,		/* malformed: not msgpack, not a map, junk */
	FY_ETOOBIG = -2,	/* a length above the caller's maximum */
	FY_ENOMEM = -3,		/* allocation failed */
	FY_ETYPE = -4,		/* well-formed frame of an unknown type */
	FY_EFIELD = -5,		/* a required field missing or of wrong type */
	FY_EAUTH = -6,		/* a SCRAM proof or signature that does not
				   verify (scram.h) */
};

/*
 * How many bytes the frame starting at buf occupies, header included.
 * Returns FY_AGAIN while fewer than FY_HDR_LEN bytes are available,
 * FY_EPROTO for a zero length, FY_OK with *need set otherwise.  The caller
 * compares *need against its own maximum (FY_ETOOBIG is the caller's to
 * report) and waits until that many bytes are buffered.  Only where size_t
 * is 32 bits can it return FY_ETOOBIG itself (a total that would wrap).
 */
int fy_frame_need(const uint8_t *buf, size_t len, size_t *need);

/* Write the 4-byte big-endian length of a payload of len bytes to dst. */
void fy_frame_put_len(uint8_t *dst, uint32_t len);

#endif
