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
import { Packr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE } from 'msgpackr';
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

/*
 * The decoder is written by hand for the frames the broker sends (section
 * 3's types: map, array, str, bin, int, nil, bool; floats too, though the
 * broker sends none): it builds only the values, interns map keys, and
 * leaves bin values as views of the input, where msgpackr's generic
 * decoder cost a third of a consumer's time. Integers come back as number
 * when safe, as bigint above 2^53 (see the head of this file).
 */
const MAX_DEPTH = 16;	/* section 3, rule 8 */
let db: Buffer = Buffer.alloc(0);
let dp = 0;
let dend = 0;

function truncated(): never {
	throw new BrokerProtocolError('malformed frame payload: truncated ' +
	    'inside a value');
}

function need(n: number): void {
	if (dend - dp < n)
		truncated();
}

/*
 * Map keys: the same few dozen names in every frame, kept as strings in
 * a small cache by hash (no string made per key), each with its index in
 * FRAME_KEYS (-1: none) so that a frame's top-level keys are stored by
 * name (frameMap).
 */
const FRAME_KEYS = ['t', 'rid', 'code', 'msg', 'sid', 'group', 'ids', 'dur',
    'dups', 'stats', 'broker', 'inflight', 'events', 'id', 'topic', 'lease',
    'att', 'ts', 'hdr', 'hist', 'reply_to', 'corr', 'body', 'v', 'server',
    'session', 'max_frame', 'max_msg', 'boot', 'idle', 'user', 'sasl'] as const;
const KEYS: Array<string | undefined> = new Array(1024);
const KEYIDX = new Int8Array(1024);
let keyIdx = -1;	/* FRAME_KEYS index of the last key() */

function key(n: number): string {
	need(n);
	keyIdx = -1;
	if (n > 16)
		return str(n);
	let h = n;
	for (let i = 0; i < n; i++) {
		const c = db[dp + i];
		if (c >= 0x80)
			return str(n);
		h = (h * 31 + c) & 1023;
	}
	const k = KEYS[h];
	if (k !== undefined && k.length === n) {
		let i = 0;
		while (i < n && k.charCodeAt(i) === db[dp + i])
			i++;
		if (i === n) {
			dp += n;
			keyIdx = KEYIDX[h];
			return k;
		}
	}
	const s = str(n);
	const i = (FRAME_KEYS as readonly string[]).indexOf(s);
	KEYS[h] = i >= 0 ? FRAME_KEYS[i] : s;
	KEYIDX[h] = keyIdx = i;
	return KEYS[h]!;
}

type Slicer = { utf8Slice(a: number, b: number): string };

/*
 * utf8Slice() makes a one-byte string of ASCII as fast as latin1Slice()
 * (Node 20): scanning for ASCII first to use the latter cost more than
 * it saved (36 bytes, an id: 130 ns against 80).
 */
function str(n: number): string {
	need(n);
	const s = (db as unknown as Slicer).utf8Slice(dp, dp + n);
	dp += n;
	return s;
}

function bin(n: number): Buffer {
	need(n);
	const b = db.subarray(dp, dp + n);
	dp += n;
	return b;
}

function u64(): number | bigint {
	need(8);
	const hi = db.readUInt32BE(dp);
	const lo = db.readUInt32BE(dp + 4);
	dp += 8;
	if (hi < 0x200000)
		return hi * 0x100000000 + lo;
	return (BigInt(hi) << 32n) | BigInt(lo);
}

function i64(): number | bigint {
	need(8);
	const hi = db.readInt32BE(dp);
	const lo = db.readUInt32BE(dp + 4);
	dp += 8;
	if (hi >= -0x200000 && hi < 0x200000)
		return hi * 0x100000000 + lo;
	return (BigInt(hi) << 32n) | BigInt(lo);
}

function map(n: number, depth: number): Payload {
	if (depth > MAX_DEPTH)
		throw new BrokerProtocolError('frame payload nested too deep');
	const o: Payload = {};
	for (let i = 0; i < n; i++) {
		need(1);
		const c = db[dp];
		let k: string | undefined;
		if (c >= 0xa0 && c <= 0xbf) {
			dp++;
			k = key(c & 0x1f);
		} else {
			const v = value(depth);	/* rule 2: other keys are ignored */
			if (typeof v === 'string')
				k = v;
		}
		const v = value(depth);
		if (k !== undefined && k !== '__proto__')
			o[k] = v;
	}
	return o;
}

function array(n: number, depth: number): unknown[] {
	if (depth > MAX_DEPTH)
		throw new BrokerProtocolError('frame payload nested too deep');
	if (n > dend - dp)	/* each element takes a byte at least */
		truncated();
	const a = new Array<unknown>(n);
	for (let i = 0; i < n; i++)
		a[i] = value(depth);
	return a;
}

function value(depth: number): unknown {
	need(1);
	const c = db[dp++];
	if (c < 0x80)
		return c;
	if (c >= 0xe0)
		return c - 0x100;
	if (c >= 0xa0 && c <= 0xbf)
		return key(c & 0x1f);	/* short: topics, names, repeat */
	if (c <= 0x8f)
		return map(c & 0x0f, depth + 1);
	if (c <= 0x9f)
		return array(c & 0x0f, depth + 1);
	let n: number;
	switch (c) {
	case 0xc0: return null;
	case 0xc2: return false;
	case 0xc3: return true;
	case 0xc4: need(1); n = db[dp]; dp += 1; return bin(n);
	case 0xc5: need(2); n = db.readUInt16BE(dp); dp += 2; return bin(n);
	case 0xc6: need(4); n = db.readUInt32BE(dp); dp += 4; return bin(n);
	case 0xca: need(4); dp += 4; return db.readFloatBE(dp - 4);
	case 0xcb: need(8); dp += 8; return db.readDoubleBE(dp - 8);
	case 0xcc: need(1); return db[dp++];
	case 0xcd: need(2); dp += 2; return db.readUInt16BE(dp - 2);
	case 0xce: need(4); dp += 4; return db.readUInt32BE(dp - 4);
	case 0xcf: return u64();
	case 0xd0: need(1); dp += 1; return db.readInt8(dp - 1);
	case 0xd1: need(2); dp += 2; return db.readInt16BE(dp - 2);
	case 0xd2: need(4); dp += 4; return db.readInt32BE(dp - 4);
	case 0xd3: return i64();
	case 0xd9: need(1); n = db[dp]; dp += 1; return str(n);
	case 0xda: need(2); n = db.readUInt16BE(dp); dp += 2; return str(n);
	case 0xdb: need(4); n = db.readUInt32BE(dp); dp += 4; return str(n);
	case 0xdc: need(2); n = db.readUInt16BE(dp); dp += 2;
		return array(n, depth + 1);
	case 0xdd: need(4); n = db.readUInt32BE(dp); dp += 4;
		return array(n, depth + 1);
	case 0xde: need(2); n = db.readUInt16BE(dp); dp += 2;
		return map(n, depth + 1);
	case 0xdf: need(4); n = db.readUInt32BE(dp); dp += 4;
		return map(n, depth + 1);
	default:
		throw new BrokerProtocolError('malformed frame payload: byte 0x' +
		    c.toString(16) + ' is no msgpack type the protocol uses');
	}
}

/*
 * A frame's top-level map: known keys are stored by name, one store site
 * per key, so each site sees the few shapes ferryd's fixed key orders
 * make (a keyed store with a varying key is megamorphic: slow).
 */
function frameMap(n: number): Payload {
	const o: Payload = {};
	for (let i = 0; i < n; i++) {
		need(1);
		const c = db[dp];
		let k: string | undefined;
		keyIdx = -1;
		if (c >= 0xa0 && c <= 0xbf) {
			dp++;
			k = key(c & 0x1f);
		} else {	/* a key in a longer form, or not a str (rule 2) */
			const v = value(1);
			keyIdx = -1;
			if (typeof v === 'string') {
				k = v;
				keyIdx = (FRAME_KEYS as readonly string[]).indexOf(v);
			}
		}
		const ki = keyIdx;
		const v = value(1);
		switch (ki) {
		case 0: o.t = v; break;
		case 1: o.rid = v; break;
		case 2: o.code = v; break;
		case 3: o.msg = v; break;
		case 4: o.sid = v; break;
		case 5: o.group = v; break;
		case 6: o.ids = v; break;
		case 7: o.dur = v; break;
		case 8: o.dups = v; break;
		case 9: o.stats = v; break;
		case 10: o.broker = v; break;
		case 11: o.inflight = v; break;
		case 12: o.events = v; break;
		case 13: o.id = v; break;
		case 14: o.topic = v; break;
		case 15: o.lease = v; break;
		case 16: o.att = v; break;
		case 17: o.ts = v; break;
		case 18: o.hdr = v; break;
		case 19: o.hist = v; break;
		case 20: o.reply_to = v; break;
		case 21: o.corr = v; break;
		case 22: o.body = v; break;
		case 23: o.v = v; break;
		case 24: o.server = v; break;
		case 25: o.session = v; break;
		case 26: o.max_frame = v; break;
		case 27: o.max_msg = v; break;
		case 28: o.boot = v; break;
		case 29: o.idle = v; break;
		case 30: o.user = v; break;
		case 31: o.sasl = v; break;
		default:
			if (k !== undefined && k !== '__proto__')
				o[k] = v;
		}
	}
	return o;
}

function start(buf: Uint8Array, from: number, to: number): void {
	db = Buffer.isBuffer(buf) ? buf :
	    Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
	dp = from;
	dend = to;
	const c = dend > dp ? db[dp] : 0;
	if (!((c >= 0x80 && c <= 0x8f) || c === 0xde || c === 0xdf))
		throw new BrokerProtocolError('frame payload is not a msgpack map');
}

function finish(): void {
	if (dp !== dend)
		throw new BrokerProtocolError('malformed frame payload: ' +
		    `${dend - dp} bytes after the map`);
}

/**
 * Decode the frame payload in buf[from..to) (FrameReader's arguments):
 * what decodePayload returns, faster for the frames of section 6 (the
 * client's path). bin values are views of buf.
 */
export function decodeFrame(buf: Uint8Array, from = 0, to = buf.length):
    Payload {
	try {
		start(buf, from, to);
		const c = db[dp++];
		let n: number;
		if (c <= 0x8f) {
			n = c & 0x0f;
		} else if (c === 0xde) {
			need(2);
			n = db.readUInt16BE(dp);
			dp += 2;
		} else {
			need(4);
			n = db.readUInt32BE(dp);
			dp += 4;
		}
		const f = frameMap(n);
		finish();
		return f;
	} finally {
		db = EMPTY;	/* keep no chunk alive */
	}
}

/* A small uint at dp (fixint, uint 8/16/32), or -1. */
function smallUint(): number {
	need(1);
	const c = db[dp++];
	if (c < 0x80)
		return c;
	switch (c) {
	case 0xcc: need(1); return db[dp++];
	case 0xcd: need(2); dp += 2; return db.readUInt16BE(dp - 2);
	case 0xce: need(4); dp += 4; return db.readUInt32BE(dp - 4);
	default: return -1;
	}
}

/** What readConfirm() found: the confirmed message's id. */
export const confirm = { id: '' };

/**
 * The confirm of a single publish, `{t:65, rid, ids:[id], dur, dups}`
 * (dur and dups optional, keys in any order), read without building any
 * object: returns its rid and leaves the id in `confirm.id`. Returns 0
 * for any other payload, well-formed or not: decodeFrame then reads (or
 * refuses) it the long way.
 */
export function readConfirm(buf: Buffer, from: number, to: number): number {
	/*
	 * ferryd's layout first, {t:65, rid, ids:[id], dur?}: byte compares
	 * on locals; then any order, the loop below.
	 */
	const n = to - from;
	if (n > 20 && buf[from + 1] === 0xa1 && buf[from + 2] === 0x74 &&
	    buf[from + 3] === 0x41 && buf[from + 4] === 0xa3 &&
	    buf[from + 5] === 0x72 && buf[from + 6] === 0x69 &&
	    buf[from + 7] === 0x64) {
		const c = buf[from];
		let p = from + 8;
		let rid = buf[p++];
		if (rid === 0xcc) {
			rid = buf[p++];
		} else if (rid === 0xcd) {
			rid = buf[p] << 8 | buf[p + 1];
			p += 2;
		} else if (rid === 0xce) {
			rid = buf[p] * 0x1000000 + (buf[p + 1] << 16 | buf[p + 2] << 8 |
			    buf[p + 3]);
			p += 4;
		} else if (rid >= 0x80) {
			rid = 0;
		}
		if (rid > 0 && (c === 0x83 || c === 0x84) && to - p > 6 &&
		    buf[p] === 0xa3 && buf[p + 1] === 0x69 && buf[p + 2] === 0x64 &&
		    buf[p + 3] === 0x73 && buf[p + 4] === 0x91) {
			let len = buf[p + 5];
			p += 6;
			if (len === 0xd9)
				len = buf[p++];
			else if (len >= 0xa0 && len <= 0xbf)
				len &= 0x1f;
			else
				len = -1;
			const s = p;
			p += len;
			let ok = len >= 0 && p <= to;
			if (ok && c === 0x84) {	/* dur, a small uint */
				ok = to - p >= 5 && buf[p] === 0xa3 && buf[p + 1] === 0x64 &&
				    buf[p + 2] === 0x75 && buf[p + 3] === 0x72;
				const v = buf[p + 4];
				p += 5 + (v < 0x80 ? 0 : v === 0xcc ? 1 : v === 0xcd ? 2 :
				    v === 0xce ? 4 : v === 0xcf ? 8 : to);
			}
			if (ok && p === to) {
				confirm.id = (buf as unknown as Slicer).utf8Slice(s, s + len);
				return rid;
			}
		}
	}
	/*
	 * t first, a fixint other than OK's (every delivery, as ferryd
	 * writes them): no confirm, whatever follows.
	 */
	if (n > 3 && buf[from + 1] === 0xa1 && buf[from + 2] === 0x74 &&
	    buf[from + 3] < 0x80 && buf[from + 3] !== 0x41)
		return 0;
	db = buf;
	dp = from;
	dend = to;
	try {
		need(1);
		const c = db[dp++];
		if (c < 0x82 || c > 0x85)
			return 0;
		let t = 0, rid = 0, id: string | undefined;
		for (let i = c & 0x0f; i > 0; i--) {
			need(1);
			const k = db[dp];
			if (k < 0xa1 || k > 0xa4)
				return 0;
			need(1 + (k & 0x1f));	/* the whole key: k1..k3 are in */
			const k1 = db[dp + 1], k2 = db[dp + 2], k3 = db[dp + 3];
			if (k === 0xa1 && k1 === 0x74) {			/* t */
				dp += 2;
				t = smallUint();
			} else if (k === 0xa3 && k1 === 0x72 && k2 === 0x69 &&
			    k3 === 0x64) {					/* rid */
				dp += 4;
				rid = smallUint();
			} else if (k === 0xa3 && k1 === 0x69 && k2 === 0x64 &&
			    k3 === 0x73) {					/* ids */
				dp += 4;
				need(2);
				if (db[dp] !== 0x91)
					return 0;
				const s = db[dp + 1];
				dp += 2;
				if (s >= 0xa0 && s <= 0xbf) {
					id = str(s & 0x1f);
				} else if (s === 0xd9) {
					need(1);
					id = str(db[dp++]);
				} else {
					return 0;
				}
			} else if ((k === 0xa3 && k1 === 0x64 && k2 === 0x75 &&
			    k3 === 0x72) || (k === 0xa4 && k1 === 0x64 &&
			    k2 === 0x75 && k3 === 0x70 && db[dp + 4] === 0x73)) {
				dp += 1 + (k & 0x1f);			/* dur, dups */
				if (smallUint() < 0)
					return 0;
			} else {
				return 0;
			}
		}
		if (t !== 65 || rid <= 0 || id === undefined || dp !== dend)
			return 0;
		confirm.id = id;
		return rid;
	} catch {
		return 0;	/* truncated: decodeFrame says what is wrong */
	} finally {
		db = EMPTY;
	}
}

/*
 * A uint at dp in any width (rule 7 allows any), or the generic value
 * when it is something else (Message refuses it then).
 */
function uintAt(): unknown {
	need(1);
	const c = db[dp];
	if (c < 0x80) {
		dp++;
		return c;
	}
	if (c === 0xcf && dend - dp >= 9) {
		const hi = db[dp + 1] * 0x1000000 + (db[dp + 2] << 16 |
		    db[dp + 3] << 8 | db[dp + 4]);
		const lo = db[dp + 5] * 0x1000000 + (db[dp + 6] << 16 |
		    db[dp + 7] << 8 | db[dp + 8]);
		if (hi < 0x200000) {
			dp += 9;
			return hi * 0x100000000 + lo;
		}
	}
	return value(1);
}

/* A str at dp (fixstr, str 8), else the generic value. */
function strAt(): unknown {
	need(2);
	const c = db[dp];
	if (c >= 0xa0 && c <= 0xbf) {
		dp++;
		return str(c & 0x1f);
	}
	if (c === 0xd9) {
		const n = db[dp + 1];
		dp += 2;
		return str(n);
	}
	return value(1);
}

/* A bin at dp (bin 8, bin 16), else the generic value. */
function binAt(): unknown {
	need(2);
	const c = db[dp];
	if (c === 0xc4) {
		const n = db[dp + 1];
		dp += 2;
		return bin(n);
	}
	if (c === 0xc5 && dend - dp >= 3) {
		const n = db[dp + 1] << 8 | db[dp + 2];
		dp += 3;
		return bin(n);
	}
	return value(1);
}

/* db[o..o+4) as an int32 (an ASCII key's 4 bytes: positive) */
function word(o: number): number {
	return db[o] << 24 | db[o + 1] << 16 | db[o + 2] << 8 | db[o + 3];
}

/**
 * What readMsg() found: a delivery's keys, absent ones undefined. One
 * object, overwritten by every readMsg(): take what you need at once
 * (new Message(delivery, ...) copies and checks it). The id is not made
 * a string here but left where it lies, idSrc[idFrom..idTo), for
 * Message to decode (text()) if it is ever read: most handlers never
 * read it, and its string was a tenth of a delivery's time.
 */
export const delivery: Payload = {
	t: T.MSG, sid: undefined, id: undefined, topic: undefined,
	lease: undefined, att: undefined, ts: undefined, hdr: undefined,
	hist: undefined, reply_to: undefined, corr: undefined, body: undefined,
	idSrc: undefined, idFrom: 0, idTo: 0,
};

/** The str at buf[from..to), as readMsg's strAt() would have made it. */
export function text(buf: Buffer, from: number, to: number): string {
	db = buf;
	dp = from;
	dend = to;
	try {
		return str(to - from);
	} finally {
		db = EMPTY;
	}
}

/*
 * The last delivery's topic, string and bytes: a subscription's
 * deliveries mostly share one topic. Matching these bytes costs less
 * than key()'s hash (a short topic), or than a new string per delivery
 * (one longer than key()'s 16 bytes).
 */
let lastTopic = '';
let lastTopicBytes: Buffer = Buffer.alloc(0);

/* A delivery's topic at dp: the last one's string if the bytes match. */
function topicAt(): unknown {
	need(2);
	const c = db[dp];
	let n = -1;
	let h = 1;	/* the str header's bytes */
	if (c >= 0xa0 && c <= 0xbf) {
		n = c & 0x1f;
	} else if (c === 0xd9) {
		n = db[dp + 1];
		h = 2;
	}
	if (n < 0)	/* not a short str: Message refuses it */
		return value(1);
	const b = lastTopicBytes;
	if (n === b.length && dend - dp - h >= n) {
		const o = dp + h;
		let i = 0;
		while (i < n && db[o + i] === b[i])
			i++;
		if (i === n) {
			dp = o + n;
			return lastTopic;
		}
	}
	dp += h;
	const s = str(n);
	lastTopic = s;
	lastTopicBytes = Buffer.from(db.subarray(dp - n, dp));
	return s;
}

/* The id's str header at dp, skipped: its bytes stay for text(). */
function idAt(d: Payload): void {
	need(2);
	const c = db[dp];
	let n = -1;
	if (c >= 0xa0 && c <= 0xbf) {
		n = c & 0x1f;
		dp++;
	} else if (c === 0xd9) {
		n = db[dp + 1];
		dp += 2;
	}
	if (n < 0) {
		d.id = value(1);	/* not a short str: Message refuses it */
		return;
	}
	need(n);
	d.idSrc = db;
	d.idFrom = dp;
	dp += n;
	d.idTo = dp;
}

/**
 * A delivery (MSG without rid) read into `delivery`, keys matched as
 * bytes: no key string looked up, no object made but the values. Returns
 * false for any other payload, or a MSG with a key this path does not
 * take (rid, hist, an unknown one): decodeFrame then reads (or refuses)
 * it the long way. The values are those decodeFrame gives, unchecked
 * (Message checks them).
 */
export function readMsg(buf: Buffer, from: number, to: number): boolean {
	db = buf;
	dp = from;
	dend = to;
	try {
		const c = to - from > 4 ? db[dp] : 0;
		if (c < 0x83 || c > 0x8f || db[dp + 1] !== 0xa1 ||
		    db[dp + 2] !== 0x74 || db[dp + 3] !== T.MSG)
			return false;
		dp += 4;
		const d = delivery;
		d.sid = d.id = d.topic = d.lease = d.att = d.ts = d.hdr =
		    d.reply_to = d.corr = d.body = d.idSrc = undefined;
		for (let i = (c & 0x0f) - 1; i > 0; i--) {
			/*
			 * The key by its length, then its bytes as one or two
			 * numbers (a loop over them was a fifth of the time).
			 */
			if (dp >= dend)
				return false;
			const k = db[dp];
			const n = k & 0x1f;
			if ((k & 0xe0) !== 0xa0 || dend - dp <= n)
				return false;
			const o = dp + 1;
			let w = -1, x: number;
			switch (n) {
			case 2:
				x = db[o] << 8 | db[o + 1];
				w = x === 0x6964 ? 1 : x === 0x7473 ? 5 : -1;	/* id ts */
				break;
			case 3:
				x = db[o] << 16 | db[o + 1] << 8 | db[o + 2];
				w = x === 0x736964 ? 0 : x === 0x617474 ? 4 :	/* sid att */
				    x === 0x686472 ? 6 : -1;			/* hdr */
				break;
			case 4:
				x = word(o);
				w = x === 0x626f6479 ? 9 : x === 0x636f7272 ? 8 : -1;
				break;						/* body corr */
			case 5:
				x = word(o + 1);
				w = db[o] === 0x74 && x === 0x6f706963 ? 2 :	/* topic */
				    db[o] === 0x6c && x === 0x65617365 ? 3 : -1;	/* lease */
				break;
			case 8:							/* reply_to */
				if (db[o] === 0x72 && word(o + 1) === 0x65706c79 &&
				    (db[o + 5] << 16 | db[o + 6] << 8 | db[o + 7]) === 0x5f746f)
					w = 7;
				break;
			}
			if (w < 0)
				return false;	/* rid, hist, unknown: the long way */
			dp = o + n;
			switch (w) {
			case 0: d.sid = uintAt(); break;
			case 1: idAt(d); break;
			case 2: d.topic = topicAt(); break;
			case 3: d.lease = uintAt(); break;
			case 4: d.att = uintAt(); break;
			case 5: d.ts = uintAt(); break;
			case 6: d.hdr = value(1); break;
			case 7: d.reply_to = strAt(); break;
			case 8: d.corr = strAt(); break;
			default: d.body = binAt(); break;
			}
		}
		return dp === dend;
	} catch {
		return false;	/* malformed: decodeFrame says what is wrong */
	} finally {
		db = EMPTY;
	}
}

/**
 * Decode one payload into plain objects. Throws BrokerProtocolError
 * unless it is exactly one msgpack map (section 2: nothing missing,
 * nothing trailing). bin values are views of buf.
 */
export function decodePayload(buf: Uint8Array): Payload {
	try {
		start(buf, 0, buf.length);
		const v = value(0) as Payload;
		finish();
		return v;
	} finally {
		db = EMPTY;	/* keep no chunk alive */
	}
}
const EMPTY = Buffer.alloc(0);

/**
 * A uint64 in the form decodeFrame gives it: number below 2^53, bigint
 * above; so one value has one form, fit for a Map key.
 */
export function canonical(v: bigint): number | bigint {
	return v <= 0x1fffffffffffffn ? Number(v) : v;
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
 * its last byte arrives, so a large body in many chunks costs one copy;
 * the frames after it in the last chunk stay views of that chunk.
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

	/*
	 * onFrame gets each payload as chunk[start..end) (no view made per
	 * frame: decodeFrame takes the range).
	 */
	push(chunk: Buffer, onFrame: (buf: Buffer, start: number, end: number) =>
	    void): void {
		let off = 0;
		while (this.partsLen) {
			/*
			 * A frame split across reads: join only its own bytes,
			 * not the rest of chunk with it (that copied nearly every
			 * read once, and made a new buffer of a read's size).
			 */
			const take = Math.min(this.need - this.partsLen,
			    chunk.length - off);
			if (take === 0)
				return;
			this.parts.push(chunk.subarray(off, off + take));
			this.partsLen += take;
			off += take;
			if (this.partsLen < this.need)
				return;
			const head = Buffer.concat(this.parts, this.partsLen);
			this.parts = [];
			this.partsLen = 0;
			/* the frame, or its header only: then more is needed */
			this.frames(head, 0, onFrame);
		}
		this.frames(chunk, off, onFrame);
	}

	/* The frames of chunk from off; an incomplete one's bytes are kept. */
	private frames(chunk: Buffer, off: number, onFrame: (buf: Buffer,
	    start: number, end: number) => void): void {
		const n = chunk.length;
		while (n - off >= 4) {
			const len = chunk[off] * 0x1000000 + (chunk[off + 1] << 16 |
			    chunk[off + 2] << 8 | chunk[off + 3]);
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
			onFrame(chunk, off, off + len);
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
 * The optional per-message keys of a single PUB, as publish() takes
 * them (PublishOptions fits): FrameWriter.pub() writes the truthy ones.
 */
export interface PubFields {
	group?: string;
	mandatory?: boolean;
	id?: string;
	delay?: number | bigint;
	ttl?: number | bigint;
	replyTo?: string;
	correlationId?: string;
}

/* packr writes in its own buffer, from the same place every time */
const IN_PLACE = REUSE_BUFFER_MODE | RESET_BUFFER_MODE;
/*
 * Above the client's FLUSH_BYTES (256 KiB: it writes once that much is
 * queued) and a frame more: a turn's frames fit without growing the
 * buffer, which cost a copy and a buffer the writer could not reuse.
 */
const WRITER_SIZE = 512 * 1024;
const SPARES = 4;

/* The keys of a single-message PUB, in the order section 10 shows. */
const K = Object.fromEntries(['t', 'rid', 'topic', 'group', 'mandatory',
    'id', 'hdr', 'delay', 'ttl', 'reply_to', 'corr', 'pid', 'seq', 'body',
    'sid', 'lease', 'leases'].map((k) => [k, Buffer.from(
    [0xa0 | k.length, ...Buffer.from(k)])]));

/* v (a uint below 2^32) at b[o] in its shortest form; returns the end. */
function putUint32(b: Buffer, o: number, v: number): number {
	if (v < 0x80) {
		b[o] = v;
		return o + 1;
	}
	if (v < 0x100) {
		b[o] = 0xcc;
		b[o + 1] = v;
		return o + 2;
	}
	if (v < 0x10000) {
		b[o] = 0xcd;
		b[o + 1] = v >> 8;
		b[o + 2] = v & 0xff;
		return o + 3;
	}
	b[o] = 0xce;
	b[o + 1] = v >>> 24;
	b[o + 2] = (v >> 16) & 0xff;
	b[o + 3] = (v >> 8) & 0xff;
	b[o + 4] = v & 0xff;
	return o + 5;
}

/* A map key and its str value, encoded. */
function keyStr(k: Buffer, v: string): Buffer {
	const n = Buffer.byteLength(v);
	const head = n < 32 ? [0xa0 | n] : n < 0x100 ? [0xd9, n] :
	    n < 0x10000 ? [0xda, n >> 8, n & 0xff] :
	    [0xdb, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
	return Buffer.concat([k, Buffer.from(head), Buffer.from(v)]);
}

/**
 * Coalesces outgoing frames: each is encoded in place behind the ones
 * queued before it, length first, so a burst of publishes or acks costs
 * one socket write and no allocation per frame. PUB and ACK, the frames
 * sent per message, are encoded by hand (pub(), ack()); the rest through
 * msgpackr (pack()). A buffer handed to the socket by take() comes back
 * through recycle() once written, so steady traffic allocates nothing
 * (a new 64 KiB buffer per write had been most of the collector's work).
 */
export class FrameWriter {
	private buf: Buffer = Buffer.allocUnsafeSlow(WRITER_SIZE);
	private used = 0;
	private spare: Buffer[] = [];
	/*
	 * The last PUB's topic and producer id, encoded with their keys (and
	 * seq's key): publishes mostly repeat both, and copying bytes is
	 * cheaper than encoding a string.
	 */
	private topic = '';
	private topicBytes: Buffer = Buffer.alloc(0);
	private pid = '';
	private pidBytes: Buffer = Buffer.alloc(0);
	/* pubPlain()'s: topic, pid and seq's key */
	private plainTopic = '';
	private plainPid = '';
	private plain: Buffer = Buffer.alloc(0);

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
		this.room(4 + len);
		this.buf.writeUInt32BE(len, this.used);
		src.copy(this.buf, this.used + 4, start, end);
		this.used += 4 + len;
		return len;
	}

	private room(n: number): void {
		const need = this.used + n;
		if (need <= this.buf.length)
			return;
		const nb = Buffer.allocUnsafeSlow(Math.max(need, 2 * this.buf.length));
		this.buf.copy(nb, 0, 0, this.used);
		this.buf = nb;
	}

	/* ---- hand encoding (section 3's quick reference) ---- */

	private raw(k: Buffer): void {
		const n = k.length;
		this.room(n);
		const b = this.buf;
		const o = this.used;
		if (n > 24)
			b.set(k, o);
		else
			for (let i = 0; i < n; i++)
				b[o + i] = k[i];
		this.used = o + n;
	}

	private byte(c: number): void {
		this.room(1);
		this.buf[this.used++] = c;
	}

	/* A uint in its shortest form (rule 7). */
	private uint(v: number | bigint): void {
		this.room(9);
		const b = this.buf;
		let o = this.used;
		if (typeof v === 'bigint') {
			if (v < 0n || v > 0xffffffffffffffffn)
				throw new RangeError(`${v} is not a uint64`);
			if (v > 0xffffffffn) {
				b[o] = 0xcf;
				b.writeBigUInt64BE(v, o + 1);
				this.used = o + 9;
				return;
			}
			v = Number(v);
		}
		if (!(v >= 0) || !Number.isSafeInteger(v))
			throw new RangeError(`${v} is not a uint`);
		if (v < 0x80) {
			b[o++] = v;
		} else if (v < 0x100) {
			b[o++] = 0xcc;
			b[o++] = v;
		} else if (v < 0x10000) {
			b[o] = 0xcd;
			b.writeUInt16BE(v, o + 1);
			o += 3;
		} else if (v < 0x100000000) {
			b[o] = 0xce;
			b.writeUInt32BE(v, o + 1);
			o += 5;
		} else {
			b[o] = 0xcf;
			b.writeUInt32BE(Math.floor(v / 0x100000000), o + 1);
			b.writeUInt32BE(v >>> 0, o + 5);
			o += 9;
		}
		this.used = o;
	}

	private str(s: string): void {
		const n = s.length;
		if (n < 32) {
			/* ASCII, the usual case: no byte count, no call */
			this.room(1 + n);
			const b = this.buf;
			const o = this.used;
			let i = 0;
			for (; i < n; i++) {
				const c = s.charCodeAt(i);
				if (c >= 0x80)
					break;
				b[o + 1 + i] = c;
			}
			if (i === n) {
				b[o] = 0xa0 | n;
				this.used = o + 1 + n;
				return;
			}
		}
		const len = Buffer.byteLength(s);
		this.room(5 + len);
		const b = this.buf;
		let o = this.used;
		if (len < 32) {
			b[o++] = 0xa0 | len;
		} else if (len < 0x100) {
			b[o++] = 0xd9;
			b[o++] = len;
		} else if (len < 0x10000) {
			b[o] = 0xda;
			b.writeUInt16BE(len, o + 1);
			o += 3;
		} else {
			b[o] = 0xdb;
			b.writeUInt32BE(len, o + 1);
			o += 5;
		}
		b.write(s, o, len, 'utf8');
		this.used = o + len;
	}

	private bin(v: Uint8Array): void {
		const len = v.length;
		this.room(5 + len);
		const b = this.buf;
		let o = this.used;
		if (len < 0x100) {
			b[o++] = 0xc4;
			b[o++] = len;
		} else if (len < 0x10000) {
			b[o] = 0xc5;
			b.writeUInt16BE(len, o + 1);
			o += 3;
		} else {
			b[o] = 0xc6;
			b.writeUInt32BE(len, o + 1);
			o += 5;
		}
		b.set(v, o);
		this.used = o + len;
	}

	private mapHead(n: number): void {
		if (n < 16)
			this.byte(0x80 | n);
		else {
			this.room(3);
			this.buf[this.used] = 0xde;
			this.buf.writeUInt16BE(n, this.used + 1);
			this.used += 3;
		}
	}

	/* Reserve the length; end() fills it in. */
	private begin(): number {
		this.room(4);
		const at = this.used;
		this.used += 4;
		return at;
	}

	private end(at: number): number {
		const len = this.used - at - 4;
		this.buf.writeUInt32BE(len, at);
		return len;
	}

	/**
	 * A single-message PUB (body, not msgs) from its parts, with no
	 * frame object built: keys in the order of section 10's examples;
	 * returns the payload's length. An optional key is left out when its
	 * value is falsy (its default: section 4's PUB table), `mandatory` is
	 * written only as true, pid and seq only with a seq. Numbers may be
	 * bigints; a value that is no uint throws RangeError and leaves
	 * nothing queued. A msgs batch goes through pack().
	 */
	pub(rid: number, topic: string, body: Uint8Array,
	    hdr: Record<string, string> | undefined, o: PubFields, pid: string,
	    seq: number | bigint): number {
		const { group, mandatory, id, delay, ttl } = o;
		const replyTo = o.replyTo, corr = o.correlationId;
		if (!group && !mandatory && !id && !hdr && !delay && !ttl &&
		    !replyTo && !corr && rid > 0 && rid < 0x100000000 &&
		    typeof seq === 'number' && seq > 0 && seq < 0x100000000 &&
		    body.length < 0x10000)
			return this.pubPlain(rid, topic, body, pid, seq);
		const at = this.begin();
		try {
			this.mapHead(3 + +!!rid + +!!group + +!!mandatory + +!!id +
			    +!!hdr + +!!delay + +!!ttl + +!!replyTo + +!!corr +
			    2 * +!!seq);
			this.raw(K.t);
			this.byte(T.PUB);
			if (rid) {
				this.raw(K.rid);
				this.uint(rid);
			}
			if (topic !== this.topic) {
				this.topic = topic;
				this.topicBytes = keyStr(K.topic, topic);
			}
			this.raw(this.topicBytes);
			if (group) {
				this.raw(K.group);
				this.str(group);
			}
			if (mandatory) {
				this.raw(K.mandatory);
				this.byte(0xc3);
			}
			if (id) {
				this.raw(K.id);
				this.str(id);
			}
			if (hdr) {
				const keys = Object.keys(hdr);
				this.raw(K.hdr);
				this.mapHead(keys.length);
				for (const k of keys) {
					this.str(k);
					this.str(hdr[k]);
				}
			}
			if (delay) {
				this.raw(K.delay);
				this.uint(delay);
			}
			if (ttl) {
				this.raw(K.ttl);
				this.uint(ttl);
			}
			if (replyTo) {
				this.raw(K.reply_to);
				this.str(replyTo);
			}
			if (corr) {
				this.raw(K.corr);
				this.str(corr);
			}
			if (seq) {
				if (pid !== this.pid) {
					this.pid = pid;
					this.pidBytes = Buffer.concat([keyStr(K.pid, pid), K.seq]);
				}
				this.raw(this.pidBytes);
				this.uint(seq);
			}
			this.raw(K.body);
			this.bin(body);
		} catch (e) {
			this.used = at;
			throw e;
		}
		return this.end(at);
	}

	/*
	 * pub()'s usual case, a confirmed publish without options: six keys,
	 * written with one room() and no call per key; topic, pid and seq's
	 * key are one cached run of bytes. rid and seq below 2^32, body below
	 * 64 KiB (pub() checked).
	 */
	private pubPlain(rid: number, topic: string, body: Uint8Array,
	    pid: string, seq: number): number {
		if (topic !== this.plainTopic || pid !== this.plainPid) {
			this.plainTopic = topic;
			this.plainPid = pid;
			this.plain = Buffer.concat([keyStr(K.topic, topic),
			    keyStr(K.pid, pid), K.seq]);
		}
		const mid = this.plain;
		const blen = body.length;
		this.room(4 + 8 + 5 + mid.length + 5 + 5 + 3 + blen);
		const b = this.buf;
		const at = this.used;
		let o = at + 4;
		b[o] = 0x86;	/* t, rid, topic, pid, seq, body */
		b[o + 1] = 0xa1;
		b[o + 2] = 0x74;
		b[o + 3] = T.PUB;
		b[o + 4] = 0xa3;
		b[o + 5] = 0x72;
		b[o + 6] = 0x69;
		b[o + 7] = 0x64;
		o = putUint32(b, o + 8, rid);
		const m = mid.length;
		if (m > 48)
			b.set(mid, o);
		else
			for (let i = 0; i < m; i++)
				b[o + i] = mid[i];
		o = putUint32(b, o + m, seq);
		b[o] = 0xa4;	/* body */
		b[o + 1] = 0x62;
		b[o + 2] = 0x6f;
		b[o + 3] = 0x64;
		b[o + 4] = 0x79;
		if (blen < 0x100) {
			b[o + 5] = 0xc4;
			b[o + 6] = blen;
			o += 7;
		} else {
			b[o + 5] = 0xc5;
			b[o + 6] = blen >> 8;
			b[o + 7] = blen & 0xff;
			o += 8;
		}
		b.set(body, o);
		o += blen;
		const len = o - at - 4;
		b[at] = len >>> 24;
		b[at + 1] = (len >> 16) & 0xff;
		b[at + 2] = (len >> 8) & 0xff;
		b[at + 3] = len & 0xff;
		this.used = o;
		return len;
	}

	/** ACK {t:5, rid?, sid, lease | leases}; returns the payload length. */
	ack(rid: number, sid: number | bigint,
	    leases: Array<number | bigint>): number {
		const at = this.begin();
		this.mapHead(rid ? 4 : 3);
		this.raw(K.t);
		this.byte(5);
		if (rid) {
			this.raw(K.rid);
			this.uint(rid);
		}
		this.raw(K.sid);
		this.uint(sid);
		if (leases.length === 1) {
			this.raw(K.lease);
			this.uint(leases[0]);
		} else {
			this.raw(K.leases);
			const n = leases.length;
			if (n < 16) {
				this.byte(0x90 | n);
			} else {
				this.room(5);
				this.buf[this.used] = 0xdd;
				this.buf.writeUInt32BE(n, this.used + 1);
				this.used += 5;
			}
			for (const l of leases)
				this.uint(l);
		}
		return this.end(at);
	}

	/** Forget what was queued after the first n bytes. */
	truncate(n: number): void {
		if (n < this.used)
			this.used = n;
	}

	/**
	 * Everything queued, as one buffer (empty: null), a view of the
	 * writer's buffer: hand it to recycle() once the socket wrote it.
	 */
	take(): Buffer | null {
		if (!this.used)
			return null;
		const out = this.buf.subarray(0, this.used);
		this.buf = this.spare.pop() ?? Buffer.allocUnsafeSlow(WRITER_SIZE);
		this.used = 0;
		return out;
	}

	/** A buffer from take() that the socket is done with: reuse it. */
	recycle(out: Buffer): void {
		const ab = out.buffer;
		if (out.byteOffset === 0 && ab.byteLength === WRITER_SIZE &&
		    this.spare.length < SPARES)
			this.spare.push(Buffer.from(ab, 0, WRITER_SIZE));
	}

	clear(): void {
		this.used = 0;
	}
}
