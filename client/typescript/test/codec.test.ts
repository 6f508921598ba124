/* Codec unit tests: PROTOCOL.md's hex examples, framing edge cases. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	encodeFrame, encodePayload, decodePayload, decodeFrame, FrameReader,
	FrameWriter, uint64, wireInt, readConfirm, confirm, readMsg, delivery, text,
} from '../src/codec.js';
import { Message, type Settler } from '../src/message.js';
import {
	errorFromCode, StaleLease, QueueFull, FerryError, NoSubscribers,
	BrokerProtocolError, ShuttingDown, BadArgument,
} from '../src/errors.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/* PROTOCOL.md section 10 */
const HELLO = hex(`00 00 00 15 83 a1 74 01 a1 76 01 a4 6e 61 6d 65
a8 77 6f 72 6b 65 72 2d 31`);
const PUB = hex(`00 00 00 2a 84 a1 74 02 a3 72 69 64 01 a5 74 6f
70 69 63 ae 6f 72 64 65 72 73 2e 63 72 65 61 74
65 64 a4 62 6f 64 79 c4 05 68 65 6c 6c 6f`);
const REQ = hex(`00 00 00 46 87 a1 74 02 a3 72 69 64 02 a5 74 6f
70 69 63 a8 72 70 63 2e 65 63 68 6f a9 6d 61 6e
64 61 74 6f 72 79 c3 a8 72 65 70 6c 79 5f 74 6f
a8 5f 69 6e 62 6f 78 2e 37 a4 63 6f 72 72 a2 63
31 a4 62 6f 64 79 c4 02 68 69`);

test('HELLO encodes to the bytes of section 10', () => {
	const f = encodeFrame({ t: 1, v: 1, name: 'worker-1' });
	assert.equal(f.length, 25);
	assert.deepEqual(f, HELLO);
});

test('confirmed PUB encodes to the bytes of section 10', () => {
	const f = encodeFrame({ t: 2, rid: 1, topic: 'orders.created',
	    body: Buffer.from('hello') });
	assert.equal(f.length, 46);
	assert.deepEqual(f, PUB);
});

test('request PUB encodes to the bytes of section 10', () => {
	const f = encodeFrame({ t: 2, rid: 2, topic: 'rpc.echo',
	    mandatory: true, reply_to: '_inbox.7', corr: 'c1',
	    body: Buffer.from('hi') });
	assert.equal(f.length, 74);
	assert.deepEqual(f, REQ);
});

test('the hand-written PUB encoder writes the bytes of section 10', () => {
	const w = new FrameWriter();
	assert.equal(w.pub(1, 'orders.created', Buffer.from('hello'), undefined,
	    {}, '', 0), 42);
	assert.equal(w.pub(2, 'rpc.echo', Buffer.from('hi'), undefined,
	    { mandatory: true, replyTo: '_inbox.7', correlationId: 'c1' }, '', 0),
	    70);
	assert.deepEqual(w.take(), Buffer.concat([PUB, REQ]));
});

test('the PUB encoder agrees with the decoder on every key and width', () => {
	const w = new FrameWriter();
	const long = 'x'.repeat(300);
	const frames = [
		{ t: 2, rid: 2 ** 40, topic: 'é.topic', group: 'g', mandatory: true,
		    id: long, hdr: { 'content-type': 'application/json', ü: 'ß' },
		    delay: 200, ttl: 70000, pid: 'p'.repeat(64), seq: 2 ** 53 - 1,
		    body: Buffer.alloc(0) },
		{ t: 2, topic: 't', reply_to: 'r'.repeat(40), corr: 'c', pid: 'q',
		    seq: (1n << 60n), body: Buffer.alloc(70000, 7) },
		{ t: 2, topic: 'u'.repeat(300), body: Buffer.alloc(300, 1) },
	];
	for (const f of frames)
		w.pub(f.rid ?? 0, f.topic, f.body, f.hdr, { group: f.group,
		    mandatory: f.mandatory, id: f.id, delay: f.delay, ttl: f.ttl,
		    replyTo: f.reply_to, correlationId: f.corr }, f.pid ?? '',
		    f.seq ?? 0);
	/* falsy values are the defaults: left out */
	w.pub(0, 'z', Buffer.alloc(1), undefined, { group: '', mandatory: false,
	    id: '', delay: 0, ttl: 0, replyTo: '', correlationId: '' }, 'p', 0);
	frames.push({ t: 2, topic: 'z', body: Buffer.alloc(1) });
	const got: unknown[] = [];
	const raw: Buffer[] = [];
	new FrameReader(1 << 20).push(w.take()!, (b, s, e) => {
		const p = b.subarray(s, e);
		raw.push(Buffer.from(p));
		const o = decodePayload(p);
		o.body = Buffer.from(o.body as Uint8Array);
		got.push(o);
	});
	assert.deepEqual(got, frames);
	/* keys in the order written above: section 10's */
	assert.deepEqual(Object.keys(decodePayload(raw[0])), Object.keys(frames[0]));
	/* refused values leave nothing behind */
	assert.throws(() => w.pub(0, 't', Buffer.alloc(1), undefined,
	    { delay: -1 }, '', 0), RangeError);
	assert.throws(() => w.pub(0, 't', Buffer.alloc(1), undefined, {}, 'p',
	    1.5), RangeError);
	assert.equal(w.size, 0);
});

test('the PUB encoder\'s usual case (no options) agrees with the decoder',
    () => {
	const w = new FrameWriter();
	const want: unknown[] = [];
	const put = (rid: number, topic: string, body: Buffer, pid: string,
	    seq: number, o = {}) => {
		w.pub(rid, topic, body, undefined, o, pid, seq);
		want.push({ t: 2, rid, topic, ...('id' in o ? { id: o.id } : {}),
		    pid, seq, body });
	};
	let i = 0;
	for (const rid of [1, 200, 70000, 2 ** 32 - 1])
		for (const seq of [5, 300, 2 ** 31])
			for (const size of [0, 255, 256, 65535])
				put(rid, i++ % 3 ? 'orders' : 'é'.repeat(40),
				    Buffer.alloc(size, i), 'p1', seq);
	/* the long way in between (an id, another pid, a 64 KiB body, a
	 * seq past 2^32), then the usual case again: nothing stale */
	put(9, 'orders', Buffer.from('a'), 'p2', 7, { id: 'x' });
	put(10, 'orders', Buffer.from('b'), 'p2', 8);
	put(11, 'orders', Buffer.alloc(65536, 3), 'p1', 9);
	put(12, 'orders', Buffer.from('c'), 'p1', 2 ** 40);
	put(13, 'other', Buffer.from('d'), 'p1', 10);
	const got: unknown[] = [];
	new FrameReader(1 << 24).push(w.take()!, (b, s, e) => {
		const o = decodePayload(b.subarray(s, e));
		o.body = Buffer.from(o.body as Uint8Array);
		got.push(o);
	});
	assert.deepEqual(got, want);
});

test('the ACK encoder: one lease, or a leases array', () => {
	const w = new FrameWriter();
	w.ack(0, 1, [17]);
	assert.deepEqual(w.take(), hex('00 00 00 10 83 a1 74 05 a3 73 69 64 01' +
	    'a5 6c 65 61 73 65 11'));
	const l = [(1n << 53n) + 1n, 2 ** 40, 5];
	w.ack(9, 2n, l);
	new FrameReader(1 << 20).push(w.take()!, (b, s, e) => {
		const p = b.subarray(s, e);
		const d = decodePayload(p);
		assert.equal(d.rid, 9);
		assert.equal(d.sid, 2);
		assert.deepEqual((d.leases as unknown[]).map(uint64),
		    l.map((x) => BigInt(x)));
	});
});

test('FrameWriter reuses a written buffer, never one still queued', () => {
	const w = new FrameWriter();
	w.pack({ t: 9, rid: 1 });
	const a = w.take()!;
	w.pack({ t: 9, rid: 2 });
	const b = w.take()!;
	assert.notEqual(a.buffer, b.buffer);
	w.recycle(a);
	w.pack({ t: 9, rid: 3 });
	const c = w.take()!;	/* written in the buffer taken after b */
	w.pack({ t: 9, rid: 4 });
	const d = w.take()!;
	assert.equal(d.buffer, a.buffer);	/* a came back */
	for (const x of [b, c])
		assert.notEqual(x.buffer, a.buffer);
	assert.deepEqual(decodePayload(b.subarray(4)), { t: 9, rid: 2 });
	assert.deepEqual(decodePayload(c.subarray(4)), { t: 9, rid: 3 });
});

test('decodeFrame: the same values as decodePayload', () => {
	const p = hex(`89 a1 74 43 a3 73 69 64 01 a2 69 64 a2 6d 31
	    a5 74 6f 70 69 63 ae 6f 72 64 65 72 73 2e 63 72 65 61 74 65 64
	    a5 6c 65 61 73 65 cf 00 20 00 00 00 00 00 03
	    a3 61 74 74 01 a2 74 73 cf 00 00 01 8b cf e5 68 7b
	    a3 68 64 72 81 a1 6b a1 76
	    a4 62 6f 64 79 c4 05 68 65 6c 6c 6f`);
	const a = decodePayload(p);
	const f = decodeFrame(p);
	for (const k of Object.keys(a))
		assert.deepEqual(f[k], a[k], k);
	assert.equal(f.rid, undefined);
	/* a range of a larger buffer, as FrameReader hands it: no more */
	const big = Buffer.concat([hex('81 a1 74'), p, hex('01 02')]);
	const r = decodeFrame(big, 3, 3 + p.length);
	assert.deepEqual({ ...r, body: Buffer.from(r.body as Buffer) },
	    { ...a, body: Buffer.from(a.body as Buffer) });
	assert.throws(() => decodeFrame(big, 3, 2 + p.length),
	    BrokerProtocolError);
	assert.throws(() => decodeFrame(big, 3, 4 + p.length),
	    /1 bytes after the map/);
	/* an unknown key is kept; a key in str 8 form is still known */
	const g = decodeFrame(hex('83 a1 74 41 a3 6e 65 77 05 d9 03 72 69 64 07'));
	assert.equal(g.t, 65);
	assert.equal(g.new, 5);
	assert.equal(g.rid, 7);
	/* keys that are not str are ignored (section 3, rule 2) */
	assert.deepEqual(decodePayload(hex('82 a1 74 01 05 06')), { t: 1 });
	assert.equal(decodeFrame(hex('82 a1 74 01 05 06')).t, 1);
});

test('the decoder refuses every truncation, and what is not msgpack', () => {
	const p = encodePayload({ t: 67, sid: 1, id: 'x'.repeat(40), lease:
	    wireInt((1n << 40n) + 1n), hdr: { a: 'b' }, hist: [{ c: 'nacked' }],
	    body: Buffer.alloc(300, 1) });
	for (let n = 0; n < p.length; n++) {
		assert.throws(() => decodePayload(p.subarray(0, n)),
		    BrokerProtocolError, `cut at ${n}`);
		assert.throws(() => decodeFrame(p.subarray(0, n)),
		    BrokerProtocolError, `cut at ${n}`);
	}
	decodeFrame(p);
	for (const h of ['81 a1 74 c1', '81 a1 74 d4 01 02',
	    '81 a1 74 c7 01 01 01', '81 a1 74 dd ff ff ff ff'])
		assert.throws(() => decodeFrame(hex(h)), BrokerProtocolError, h);
	/* 16 levels are fine, 17 are not (section 3, rule 8) */
	const nest = (d: number) => hex('81 a1 61' + ' 91'.repeat(d - 2) + ' 90');
	decodePayload(nest(16));
	assert.throws(() => decodePayload(nest(17)), /too deep/);
	/* __proto__ is a key like any other, never the prototype */
	const o = decodePayload(hex('82 a1 74 01 a9 5f 5f 70 72 6f 74 6f 5f 5f' +
	    '81 a1 78 01'));
	assert.equal(Object.getPrototypeOf(o), Object.prototype);
	assert.equal((o as { x?: number }).x, undefined);
});

test('readConfirm: a single publish\'s confirm, read in place', () => {
	const id = '3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40';
	const read = (o: Record<string, unknown>) => {
		const p = encodePayload(o);
		const b = Buffer.concat([hex('ff'), p, hex('ff')]);
		return readConfirm(b, 1, 1 + p.length);
	};
	for (const rid of [1, 200, 70000, 2 ** 32 - 1]) {
		confirm.id = '';
		assert.equal(read({ t: 65, rid, ids: [id], dur: 2 }), rid);
		assert.equal(confirm.id, id);
	}
	assert.equal(read({ dups: 1, ids: ['x'.repeat(40)], rid: 9, t: 65 }), 9);
	assert.equal(confirm.id, 'x'.repeat(40));
	assert.equal(read({ t: 65, rid: 3, ids: [''] }), 3);
	assert.equal(confirm.id, '');
	/* an id not in ASCII (the longer way), a dur of 64 bits */
	assert.equal(read({ t: 65, rid: 4, ids: ['é-ü'], dur: 2 }), 4);
	assert.equal(confirm.id, 'é-ü');
	const d64 = Buffer.concat([encodePayload({ t: 65, rid: 6, ids: [id] }),
	    hex('a3 64 75 72 cf 00 00 01 00 00 00 00 00')]);
	d64[0] = 0x84;
	assert.equal(readConfirm(d64, 0, d64.length), 6);
	assert.equal(confirm.id, id);
	/* anything else: 0, for decodeFrame to read */
	for (const o of [
		{ t: 65, rid: 1, sid: 4, group: 'g' },		/* a SUB's OK */
		{ t: 65, rid: 1, ids: ['a', 'b'], dur: 2 },	/* a batch */
		{ t: 65, rid: 1 },				/* no ids */
		{ t: 66, rid: 1, ids: ['a'] },
		{ t: 65, rid: 0, ids: ['a'] },
		{ t: 65, rid: 2 ** 40, ids: ['a'] },		/* uint 64: long way */
		{ t: 65, rid: 1, ids: ['a'], dur: 2, extra: 1 },
		{ t: 65, rid: 1, ids: [5] },
		{ t: 65, rid: 1, ids: [id], dur: 'x'.repeat(8) },
		{ t: 65, rid: 1, ids: [id], dur: -1 },
	])
		assert.equal(read(o), 0, Object.keys(o).join());
	/* cut anywhere, or a byte too many: 0, never a throw */
	const p = encodePayload({ t: 65, rid: 5, ids: [id], dur: 2 });
	for (let n = 0; n < p.length; n++)
		assert.equal(readConfirm(p, 0, n), 0, `cut at ${n}`);
	const more = Buffer.concat([p, hex('c0')]);
	assert.equal(readConfirm(more, 0, more.length), 0);
	assert.equal(readConfirm(more, 0, p.length), 5);
});

test('readConfirm: t first and not OK is no confirm; a wide t of OK is one',
    () => {
	const id = '3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40';
	/* any other fixint t, with an OK's keys after it: 0 */
	for (let t = 0; t < 0x80; t++) {
		const p = encodePayload({ t, rid: 5, ids: [id] });
		assert.equal(readConfirm(p, 0, p.length), t === 65 ? 5 : 0,
		    `t ${t}`);
	}
	/* t 65 as uint 8 (rule 7 allows any width): still a confirm */
	const wide = hex(`83 a1 74 cc 41 a3 72 69 64 05 a3 69 64 73 91 a1 61`);
	confirm.id = '';
	assert.equal(readConfirm(wide, 0, wide.length), 5);
	assert.equal(confirm.id, 'a');
	/* a delivery of five keys (section 10's, fewer), cut anywhere: 0 */
	const msg = hex(`85 a1 74 43 a3 73 69 64 01 a2 69 64 a2 6d 31
	    a5 74 6f 70 69 63 a1 74 a4 62 6f 64 79 c4 01 68`);
	for (let n = 0; n <= msg.length; n++)
		assert.equal(readConfirm(msg, 0, n), 0, `cut at ${n}`);
});

test('undefined keys are left out', () => {
	assert.deepEqual(encodeFrame({ t: 1, v: 1, name: 'worker-1',
	    id: undefined, hdr: undefined }), HELLO);
});

test('the examples decode to their values, split at every byte', () => {
	const all = Buffer.concat([HELLO, PUB, REQ]);
	const want = [
		{ t: 1, v: 1, name: 'worker-1' },
		{ t: 2, rid: 1, topic: 'orders.created', body: Buffer.from('hello') },
		{ t: 2, rid: 2, topic: 'rpc.echo', mandatory: true,
		    reply_to: '_inbox.7', corr: 'c1', body: Buffer.from('hi') },
	];
	for (let cut = 0; cut <= all.length; cut++) {
		for (const step of [1, 7, all.length]) {
			const r = new FrameReader(1 << 20);
			const got: unknown[] = [];
			const feed = (b: Buffer) => r.push(b, (c, s, e) =>
			    got.push(decodePayload(c.subarray(s, e))));
			feed(all.subarray(0, cut));
			for (let o = cut; o < all.length; o += step)
				feed(all.subarray(o, Math.min(all.length, o + step)));
			const norm = got.map((g) => {
				const o = { ...(g as Record<string, unknown>) };
				if (o.body)
					o.body = Buffer.from(o.body as Uint8Array);
				return o;
			});
			assert.deepEqual(norm, want, `cut ${cut} step ${step}`);
			assert.equal(r.pending, 0);
		}
	}
});

test('a split frame is joined alone: the frames after it stay views', () => {
	const all = Buffer.concat([HELLO, PUB, REQ, PUB]);
	for (let cut = 1; cut < all.length; cut++) {
		const first = all.subarray(0, cut);
		/* its own memory, not the pool's a join could use too */
		const second = Buffer.allocUnsafeSlow(all.length - cut);
		all.copy(second, 0, cut);
		const r = new FrameReader(1 << 20);
		const got: Buffer[] = [];
		const views: boolean[] = [];
		const feed = (b: Buffer) => r.push(b, (c, s, e) => {
			got.push(Buffer.from(c.subarray(s, e)));
			views.push(c.buffer === second.buffer);
		});
		feed(first);
		feed(second);
		const want: Buffer[] = [];
		new FrameReader(1 << 20).push(all, (c, s, e) =>
		    want.push(Buffer.from(c.subarray(s, e))));
		assert.deepEqual(got, want, `cut ${cut}`);
		assert.equal(r.pending, 0);
		/* every frame wholly in the second chunk is a view of it */
		let o = 0;
		want.forEach((w, i) => {
			const start = o;
			o += 4 + w.length;
			if (start >= cut)
				assert.ok(views[i], `cut ${cut}: frame ${i} copied`);
			else if (o > cut)
				assert.ok(!views[i], `cut ${cut}: frame ${i} joined`);
		});
	}
});

test('a frame cut short is held, not decoded', () => {
	for (let n = 1; n < PUB.length; n++) {
		const r = new FrameReader(1 << 20);
		let frames = 0;
		r.push(PUB.subarray(0, n), () => frames++);
		assert.equal(frames, 0);
		assert.equal(r.pending, n);
	}
});

test('frame lengths 0 and above the limit are refused', () => {
	assert.throws(() => new FrameReader(100).push(hex('00000000'), () => {}),
	    BrokerProtocolError);
	assert.throws(() => new FrameReader(100).push(hex('00000065'), () => {}),
	    /above the limit/);
});

test('payloads that are not exactly one map are refused', () => {
	for (const h of [
		'92 01 02',		/* an array */
		'a3 61 62 63',		/* a str */
		'81 a1 74',		/* truncated inside the map */
		'81 a1 74 01 c0',	/* trailing byte */
		'c1',			/* never used */
	])
		assert.throws(() => decodePayload(hex(h)), BrokerProtocolError, h);
	assert.deepEqual(decodePayload(hex('81 a1 74 01')), { t: 1 });
});

test('integers above 2^32 are written as integers, never floats', () => {
	for (const v of [2 ** 32, 2 ** 40, 1700000000123000, 2 ** 53 - 1]) {
		const p = encodePayload({ delay: v });
		assert.ok(!p.includes(0xcb), `${v} encoded as float64`);
		/* msgpackr writes a bigint below 2^63 as int 64, which
		 * section 3 accepts for a uint (same 9 bytes as uint 64) */
		assert.ok(p[7] === 0xd3 || p[7] === 0xcf, `${v}: 64-bit int`);
		assert.equal(Number(uint64(decodePayload(p).delay)), v);
	}
	/* and the small ones in their shortest form */
	assert.deepEqual(encodePayload({ a: 200 }), hex('81 a1 61 cc c8'));
	assert.deepEqual(encodePayload({ a: 70000 }),
	    hex('81 a1 61 ce 00 01 11 70'));
});

test('uint64 beyond 2^53 keeps every bit', () => {
	const big = (1n << 53n) + 1n;
	const max = (1n << 64n) - 1n;
	const d = decodePayload(hex('82 a1 61 cf 00 20 00 00 00 00 00 01' +
	    'a1 62 cf ff ff ff ff ff ff ff ff'));
	assert.equal(uint64(d.a), big);
	assert.equal(uint64(d.b), max);
	const e = encodePayload({ a: wireInt(big), b: wireInt(max) });
	assert.deepEqual(e, hex('82 a1 61 d3 00 20 00 00 00 00 00 01' +
	    'a1 62 cf ff ff ff ff ff ff ff ff'));
	assert.equal(uint64(decodePayload(e).a), big);
	/* a small token goes out short */
	assert.deepEqual(encodePayload({ lease: wireInt(17n) }),
	    hex('81 a5 6c 65 61 73 65 11'));
	assert.equal(uint64(-1), undefined);
	assert.equal(uint64('1'), undefined);
});

test('ACK leases array keeps its tokens exact', () => {
	const l = [(1n << 32n) | 5n, (1n << 60n) | 3n];
	const d = decodePayload(encodePayload({ t: 5, sid: 1, leases: l }));
	assert.deepEqual((d.leases as unknown[]).map(uint64), l);
});

const nobody: Settler = {
	ack: async () => {}, nack: async () => {}, touch: async () => {},
	reply: async () => '',
};

test('a MSG from section 10, with a lease above 2^53', () => {
	/* {t:67, sid:1, id:"m1", topic:"orders.created", lease:2^53+3,
	 *  att:1, ts:1700000000123, hdr:{k:"v"}, body:<bin "hello">} */
	const p = decodePayload(hex(`89 a1 74 43 a3 73 69 64 01 a2 69 64 a2 6d 31
	    a5 74 6f 70 69 63 ae 6f 72 64 65 72 73 2e 63 72 65 61 74 65 64
	    a5 6c 65 61 73 65 cf 00 20 00 00 00 00 00 03
	    a3 61 74 74 01 a2 74 73 cf 00 00 01 8b cf e5 68 7b
	    a3 68 64 72 81 a1 6b a1 76
	    a4 62 6f 64 79 c4 05 68 65 6c 6c 6f`));
	const m = new Message(p, 1, nobody);
	assert.equal(m.sid, 1n);
	assert.equal(m.id, 'm1');
	assert.equal(m.topic, 'orders.created');
	assert.equal(m.lease, (1n << 53n) + 3n);
	assert.equal(m.attempt, 1);
	assert.equal(m.timestamp, 1700000000123);
	assert.deepEqual(m.headers, { k: 'v' });
	assert.equal(m.text(), 'hello');
	assert.ok(Buffer.isBuffer(m.body));
});

test('readMsg: a delivery read by its keys\' bytes, as decodeFrame reads it',
    () => {
	const sec10 = hex(`89 a1 74 43 a3 73 69 64 01 a2 69 64 a2 6d 31
	    a5 74 6f 70 69 63 ae 6f 72 64 65 72 73 2e 63 72 65 61 74 65 64
	    a5 6c 65 61 73 65 cf 00 20 00 00 00 00 00 03
	    a3 61 74 74 01 a2 74 73 cf 00 00 01 8b cf e5 68 7b
	    a3 68 64 72 81 a1 6b a1 76
	    a4 62 6f 64 79 c4 05 68 65 6c 6c 6f`);
	const same = (p: Buffer) => {
		const b = Buffer.concat([hex('ff'), p, hex('ff')]);
		assert.equal(readMsg(b, 1, 1 + p.length), true, p.toString('hex'));
		const want = decodeFrame(b, 1, 1 + p.length);
		const got: Record<string, unknown> = {};
		for (const [k, v] of Object.entries(delivery))
			if (v !== undefined && !/^id(Src|From|To)$/.test(k))
				got[k] = v;
		/*
		 * The id (up to 255 bytes) is left as bytes, for Message to
		 * make a string of; a longer one is read as a str.
		 */
		const src = delivery.idSrc as Buffer | undefined;
		if (typeof want.id === 'string' && Buffer.byteLength(want.id) < 256) {
			assert.equal(delivery.id, undefined);
			assert.equal(src, b);
			got.id = text(b, delivery.idFrom as number,
			    delivery.idTo as number);
		} else {
			assert.equal(src, undefined);
		}
		assert.deepEqual(got, want);
		/* and both make the same Message */
		const m = new Message(delivery, 1, nobody);
		const n = new Message(want, 1, nobody);
		assert.equal(m.id, n.id);
		assert.equal(m.id, m.id);
		assert.equal(m.topic, n.topic);
		assert.deepEqual(m.body, n.body);
	};
	same(sec10);
	/* keys in another order, other widths, an empty body, reply_to, corr */
	same(encodePayload({ t: 67, body: Buffer.alloc(0), corr: 'c',
	    reply_to: '_inbox.1', ts: 5, att: 300, lease: 2 ** 40, topic: 't',
	    id: 'x'.repeat(40), sid: 70000 }));
	for (const size of [31, 32, 255, 256, 70000])	/* every str, bin width */
		same(encodePayload({ t: 67, sid: 2, id: 'i'.repeat(size % 300),
		    reply_to: 'r'.repeat(size), corr: 'é'.repeat(size % 200),
		    topic: 't'.repeat(size % 250), body: Buffer.alloc(size, 1) }));
	same(hex('84 a1 74 43 a3 73 69 64 cf 00 00 00 00 00 00 00 07' +
	    'a2 69 64 a1 61 a4 62 6f 64 79 c4 00'));
	/* at-most-once: no lease; a uint 64 above 2^53 stays exact */
	same(hex('85 a1 74 43 a3 73 69 64 cf ff 00 00 00 00 00 00 07' +
	    'a2 69 64 a1 61 a2 74 73 cd 01 00 a4 62 6f 64 79 c4 00'));
	/* the rest goes the long way: false, delivery not trusted */
	for (const o of [
		{ t: 67, rid: 4, sid: 1, id: 'a', body: Buffer.alloc(1) },	/* PEEK */
		{ t: 67, sid: 1, id: 'a', hist: [{ c: 'nack' }], body: Buffer.alloc(1) },
		{ t: 67, sid: 1, id: 'a', six: 1, body: Buffer.alloc(1) },
		{ t: 67, sid: 1, id: 'a', bodx: 1, body: Buffer.alloc(1) },
		/* a known key's length and first byte, another last byte */
		...['ix', 'tx', 'sif', 'atx', 'hdx', 'corx', 'topix', 'leasx',
		    'reply_tx', 'reply-to'].map((k) => ({ t: 67, sid: 1, id: 'a',
		    [k]: 1, body: Buffer.alloc(1) })),
		{ t: 65, rid: 1, ids: ['a'] },
	])
		assert.equal(readMsg(encodePayload(o), 0, encodePayload(o).length),
		    false, Object.keys(o).join());
	/* cut anywhere, or a byte too many: false, never a throw */
	for (let n = 0; n < sec10.length; n++)
		assert.equal(readMsg(sec10, 0, n), false, `cut at ${n}`);
	const more = Buffer.concat([sec10, hex('c0')]);
	assert.equal(readMsg(more, 0, more.length), false);
	/* a bad value is read as it is, for Message to refuse */
	const bad = hex('83 a1 74 43 a3 73 69 64 a1 78 a4 62 6f 64 79 c4 00');
	assert.equal(readMsg(bad, 0, bad.length), true);
	assert.equal(delivery.sid, 'x');
	assert.throws(() => new Message(delivery, 1, nobody), BrokerProtocolError);
});

test('readMsg: deliveries of one topic share its string, others do not',
    () => {
	/* each as long as the one before, but another byte: first, inner, last */
	const topics = ['t', 'orders.created', 'a.topic.name.longer.than.16',
	    'a.topic.name.longer.than.17', 'b.topic.name.longer.than.17',
	    'b.topic.name.lXnger.than.17', 'été.naïve.topic.name', 't', 'u',
	    'abcd', 'abce', 'abcdefgh', 'abcdefgi', 'abcdXfgi'];
	const seen: string[] = [];
	for (const topic of [...topics, ...topics]) {
		const p = encodePayload({ t: 67, sid: 1, id: 'i', topic,
		    body: Buffer.alloc(1) });
		assert.equal(readMsg(p, 0, p.length), true);
		assert.equal(delivery.topic, topic);
		assert.equal(new Message(delivery, 1, nobody).topic, topic);
		seen.push(delivery.topic as string);
	}
	assert.deepEqual(seen, [...topics, ...topics]);
	/* a topic cut short after one that matched: still refused */
	const p = encodePayload({ t: 67, sid: 1, topic: 'orders.created' });
	assert.equal(readMsg(p, 0, p.length - 2), false);
});

test('a Message makes its id on first read, from readMsg\'s bytes only',
    () => {
	const p = encodePayload({ t: 67, sid: 1, id: 'é'.repeat(40),
	    body: Buffer.alloc(3) });
	assert.equal(readMsg(p, 0, p.length), true);
	const m = new Message(delivery, 1, nobody);
	/* the next delivery overwrites delivery: m keeps its own id */
	const q = encodePayload({ t: 67, sid: 1, id: 'other', body: Buffer.alloc(3) });
	assert.equal(readMsg(q, 0, q.length), true);
	assert.equal(m.id, 'é'.repeat(40));
	assert.equal(new Message(delivery, 1, nobody).id, 'other');
	/* a broker's own keys of those names are no id bytes to read */
	const n = new Message({ t: 67, sid: 1, id: 'x', idSrc: p, idFrom: 0,
	    idTo: 5, body: Buffer.alloc(0) }, 1, nobody);
	assert.equal(n.id, 'x');
	assert.throws(() => new Message({ t: 67, sid: 1, idSrc: p, idFrom: 0,
	    idTo: 5, body: Buffer.alloc(0) }, 1, nobody), BrokerProtocolError);
});

test('a MSG with a bad field is a broker protocol error', () => {
	assert.throws(() => new Message({ t: 67, id: 'x', body: Buffer.alloc(0) },
	    1, nobody), BrokerProtocolError);
	assert.throws(() => new Message({ t: 67, sid: 1, id: 'x', body: 5 },
	    1, nobody), BrokerProtocolError);
	assert.throws(() => new Message({ t: 67, sid: 1, id: 'x', att: 'one',
	    body: Buffer.alloc(0) }, 1, nobody), BrokerProtocolError);
	assert.throws(() => new Message({ t: 67, sid: 1, id: 'x', hdr: { a: 1 },
	    body: Buffer.alloc(0) }, 1, nobody), BrokerProtocolError);
});

test('earlier encodings survive later ones', () => {
	const a = encodePayload({ t: 1, v: 1, name: 'worker-1' });
	const copy = Buffer.from(a);
	for (let i = 0; i < 10000; i++)
		encodePayload({ t: 2, topic: 'x', body: Buffer.alloc(100, i) });
	assert.deepEqual(a, copy);
});

test('FrameWriter joins frames with their lengths', () => {
	const w = new FrameWriter();
	w.add(encodePayload({ t: 1, v: 1, name: 'worker-1' }));
	w.add(encodePayload({ t: 2, rid: 1, topic: 'orders.created',
	    body: Buffer.from('hello') }));
	assert.equal(w.size, HELLO.length + PUB.length);
	assert.deepEqual(w.take(), Buffer.concat([HELLO, PUB]));
	assert.equal(w.take(), null);
});

test('FrameWriter packs in place: many frames, one buffer, all intact', () => {
	const w = new FrameWriter();
	const want: Array<Record<string, unknown>> = [];
	for (let i = 0; i < 3000; i++) {
		const f = { t: 2, rid: i + 1, topic: `t${i % 7}`,
		    body: Buffer.alloc(i % 300, i & 0xff), seq: wireInt(2 ** 40 + i) };
		want.push({ ...f, seq: 2 ** 40 + i });
		w.pack(f, true);
	}
	w.pack({ t: 9, rid: undefined, x: 2 ** 33 });	/* cleaned */
	want.push({ t: 9, x: 2 ** 33 });
	const before = w.size;
	w.pack({ t: 9, big: Buffer.alloc(100) });
	w.truncate(before);
	const all = w.take()!;
	assert.equal(w.size, 0);
	const got: unknown[] = [];
	new FrameReader(1 << 20).push(all, (b, s, e) => {
		const p = b.subarray(s, e);
		const o = decodePayload(p);
		if (o.body)
			o.body = Buffer.from(o.body as Uint8Array);
		got.push(o);
	});
	assert.deepEqual(got, want);
	/* a take hands its buffer over: later frames go to another one */
	w.pack({ t: 9, rid: 1 });
	const small = w.take()!;
	const copy = Buffer.from(small);
	w.pack({ t: 9, rid: 2 });
	assert.deepEqual(small, copy);
});

test('error codes map to their classes', () => {
	const s = errorFromCode(8, 'lease 17 is no longer valid');
	assert.ok(s instanceof StaleLease);
	assert.equal(s.code, 8);
	assert.equal(s.codeName, 'E_STALE');
	assert.equal(s.retryable, false);
	assert.equal(s.name, 'StaleLease');
	const f = errorFromCode(12, 'full');
	assert.ok(f instanceof QueueFull && f.retryable);
	assert.ok(errorFromCode(18, '') instanceof NoSubscribers);
	assert.ok(errorFromCode(16, '').retryable);
	assert.ok(errorFromCode(16, '') instanceof ShuttingDown);
	assert.ok(errorFromCode(6, '') instanceof BadArgument);
	const u = errorFromCode(99, 'new');
	assert.ok(u instanceof FerryError);
	assert.equal(u.retryable, false);
	assert.equal(u.code, 99);
	for (let c = 1; c <= 18; c++)
		assert.equal(errorFromCode(c, '').code, c);
});
