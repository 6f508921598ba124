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
import { Packr, Unpackr } from 'msgpackr';
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

/** Encode one payload (a map); undefined values are left out. */
export function encodePayload(obj: Payload): Buffer {
	fixInts(obj);
	if (Array.isArray(obj.msgs))
		for (const m of obj.msgs as Payload[])
			fixInts(m);
	if (Array.isArray(obj.leases))
		obj.leases = (obj.leases as Array<bigint | number>).map(wireInt);
	return packr.pack(obj);
}

/**
 * Pack a payload as it is: for frames built with no undefined values and
 * every number above 2^32 already a bigint (see wireInt).
 */
export function packPayload(obj: Payload): Buffer {
	return packr.pack(obj);
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

/**
 * Coalesces outgoing frames: encode now, write later as one buffer, so a
 * burst of publishes or acks costs one socket write and one copy.
 */
export class FrameWriter {
	private frames: Buffer[] = [];
	private bytes = 0;

	get size(): number {
		return this.bytes;
	}

	/** Queue one payload's frame; returns its payload length. */
	add(payload: Buffer): number {
		this.frames.push(payload);
		this.bytes += 4 + payload.length;
		return payload.length;
	}

	/** Everything queued, as one buffer (empty: null). */
	take(): Buffer | null {
		if (!this.frames.length)
			return null;
		const out = Buffer.allocUnsafe(this.bytes);
		let off = 0;
		for (const p of this.frames) {
			out.writeUInt32BE(p.length, off);
			off += 4;
			off += p.copy(out, off);
		}
		this.frames = [];
		this.bytes = 0;
		return out;
	}

	clear(): void {
		this.frames = [];
		this.bytes = 0;
	}
}
