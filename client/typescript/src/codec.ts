/*
 * codec.ts - ferry frames (PROTOCOL.md sections 2, 3 and 6): bytes in,
 * plain objects out. No sockets or timers here.
 *
 * Integers: uint64 fields (rid, sid, lease, seq, counters) may exceed
 * 2^53. The decoder returns a number when the value is a safe integer and
 * a bigint otherwise; lease tokens in particular are (generation << 32 |
 * slot) in ferryd, so they pass 2^53 on a busy broker. uint64() below
 * normalises either to bigint. The encoder writes numbers above 2^32 as
 * bigint: msgpackr would otherwise write them as float64, which the
 * broker refuses.
 */
import { Packr, Unpackr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE } from 'msgpackr';
import { BrokerProtocolError } from './errors.js';

export const T = {
	HELLO: 1, PUB: 2, SUB: 3, UNSUB: 4, ACK: 5, NACK: 6, TOUCH: 7,
	DELETE: 8, PING: 9, STATS: 10, INFLIGHT: 11, PEEK: 12, TRACE: 13,
	WELCOME: 64, OK: 65, ERR: 66, MSG: 67,
} as const;

/** A decoded payload: one msgpack map with str keys. */
export type Payload = Record<string, unknown>;

const packr = new Packr({
	useRecords: false,	/* plain msgpack maps, no msgpackr extension */
	variableMapSize: true,	/* fixmap for small maps, as ferryd writes */
	/* 'auto' is missing from msgpackr's typings, not from its code. */
	int64AsType: 'auto' as 'bigint',
});
const unpackr = new Unpackr({
	useRecords: false,
	mapsAsObjects: true,
	/* safe integers as number, larger ones as bigint */
	int64AsType: 'auto' as 'bigint',
});

/* Values msgpackr would not write as PROTOCOL.md wants. */
function fixInts(obj: Payload): Payload {
	for (const k in obj) {
		const v = obj[k];
		if (typeof v === 'number' && v > 0xffffffff &&
		    Number.isInteger(v))
			obj[k] = BigInt(v);
		else if (v === undefined)
			delete obj[k];
	}
	return obj;
}

/** A uint64 value for the encoder: number when it fits 32 bits. */
export function wireInt(v: bigint | number): bigint | number {
	if (typeof v === 'bigint')
		return v <= 0xffffffffn ? Number(v) : v;
	return v > 0xffffffff ? BigInt(v) : v;
}

/* Undefined keys out, numbers above 2^32 as bigint: what packr needs. */
function cleanPayload(obj: Payload): Payload {
	fixInts(obj);
	if (Array.isArray(obj.msgs))
		for (const m of obj.msgs as Payload[])
			fixInts(m);
	if (Array.isArray(obj.leases))
		obj.leases = (obj.leases as Array<bigint | number>).map(wireInt);
	return obj;
}

/** Encode one payload (a map); undefined values are left out. */
export function encodePayload(obj: Payload): Buffer {
	return packr.pack(cleanPayload(obj));
}

/** Encode one whole frame: 4-byte big-endian length, then the payload. */
export function encodeFrame(obj: Payload): Buffer {
	const p = encodePayload(obj);
	const f = Buffer.allocUnsafe(4 + p.length);
	f.writeUInt32BE(p.length, 0);
	p.copy(f, 4);
	return f;
}

/**
 * Decode one payload. Throws BrokerProtocolError unless it is exactly one
 * msgpack map (section 2: nothing missing, nothing trailing).
 */
export function decodePayload(buf: Uint8Array): Payload {
	let v: unknown;
	try {
		v = unpackr.unpack(buf);
	} catch (e) {
		throw new BrokerProtocolError('malformed frame payload (' +
		    buf.length + ' bytes): ' + (e as Error).message);
	}
	if (v === null || typeof v !== 'object' ||
	    Object.getPrototypeOf(v) !== Object.prototype)
		throw new BrokerProtocolError('frame payload is not a msgpack map');
	return v as Payload;
}

/** A uint field as bigint (sid, lease): number or bigint in, bigint out. */
export function uint64(v: unknown): bigint | undefined {
	if (typeof v === 'bigint')
		return v >= 0n ? v : undefined;
	if (typeof v === 'number' && Number.isInteger(v) && v >= 0)
		return BigInt(v);
	return undefined;
}

/**
 * Streaming frame reader. Feed it socket chunks; it calls onFrame with
 * each complete payload, a view of the chunk (no copy) when the frame
 * lies in one chunk. A frame split across chunks is joined once, when
 * its last byte arrives, so a large body in many chunks costs one copy.
 */
export class FrameReader {
	private parts: Buffer[] = [];
	private partsLen = 0;
	private need = 4;	/* bytes the pending parts must reach */

	constructor(public maxFrame: number) {}

	/** Bytes held of an incomplete frame (non-zero at close: truncated). */
	get pending(): number {
		return this.partsLen;
	}

	/** Bytes the incomplete frame needs in all (header included). */
	get expected(): number {
		return this.need;
	}

	push(chunk: Buffer, onFrame: (payload: Buffer) => void): void {
		if (this.partsLen) {
			this.parts.push(chunk);
			this.partsLen += chunk.length;
			if (this.partsLen < this.need)
				return;
			chunk = Buffer.concat(this.parts, this.partsLen);
			this.parts = [];
			this.partsLen = 0;
		}
		let off = 0;
		const n = chunk.length;
		while (n - off >= 4) {
			const len = chunk.readUInt32BE(off);
			if (len === 0)
				throw new BrokerProtocolError(
				    'frame of length 0 from the broker');
			if (len > this.maxFrame)
				throw new BrokerProtocolError('frame of ' + len +
				    ' bytes from the broker, above the limit of ' +
				    this.maxFrame);
			if (n - off - 4 < len) {
				this.need = 4 + len;
				break;
			}
			off += 4;
			onFrame(chunk.subarray(off, off + len));
			off += len;
		}
		if (off < n) {
			if (n - off < 4)
				this.need = 4;
			this.parts.push(chunk.subarray(off));
			this.partsLen = n - off;
		}
	}
}

/* packr writes in its own buffer, from the same place every time */
const IN_PLACE = REUSE_BUFFER_MODE | RESET_BUFFER_MODE;
const WRITER_SIZE = 64 * 1024;

/**
 * Coalesces outgoing frames: each is packed in place and copied at once
 * behind the ones queued before it, length first, so a burst of publishes
 * or acks costs one socket write, one copy per frame and no allocation
 * per frame (what the garbage collector spent a fifth of the time on).
 */
export class FrameWriter {
	private buf = Buffer.allocUnsafe(WRITER_SIZE);
	private used = 0;

	/** Bytes queued, length prefixes included. */
	get size(): number {
		return this.used;
	}

	/**
	 * Pack a payload as a frame behind the queued ones; returns the
	 * payload's length. clean: the payload has no undefined values and
	 * its numbers above 2^32 are bigints already (see wireInt).
	 */
	pack(obj: Payload, clean = false): number {
		const t = packr.pack(clean ? obj : cleanPayload(obj), IN_PLACE) as
		    Buffer & { start: number; end: number };
		return this.put(t, t.start, t.end);
	}

	/** Queue an encoded payload as a frame; returns its length. */
	add(payload: Buffer): number {
		return this.put(payload, 0, payload.length);
	}

	private put(src: Buffer, start: number, end: number): number {
		const len = end - start;
		const need = this.used + 4 + len;
		if (need > this.buf.length) {
			const nb = Buffer.allocUnsafe(Math.max(need, 2 * this.buf.length));
			this.buf.copy(nb, 0, 0, this.used);
			this.buf = nb;
		}
		this.buf.writeUInt32BE(len, this.used);
		src.copy(this.buf, this.used + 4, start, end);
		this.used = need;
		return len;
	}

	/** Forget what was queued after the first n bytes. */
	truncate(n: number): void {
		if (n < this.used)
			this.used = n;
	}

	/** Everything queued, as one buffer (empty: null). */
	take(): Buffer | null {
		if (!this.used)
			return null;
		let out: Buffer;
		if (this.used <= 8192) {
			/* small: copy out (pooled), keep the buffer */
			out = Buffer.allocUnsafe(this.used);
			this.buf.copy(out, 0, 0, this.used);
		} else {
			/* the socket keeps this one until it is written */
			out = this.buf.subarray(0, this.used);
			this.buf = Buffer.allocUnsafe(WRITER_SIZE);
		}
		this.used = 0;
		return out;
	}

	clear(): void {
		this.used = 0;
	}
}
