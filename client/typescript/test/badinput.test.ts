/*
 * A broker that breaks the protocol: a tiny net.Server on 127.0.0.1 that
 * answers HELLO, then sends what each test wants. The client must fail
 * with a clear error, quickly, and never hang.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
	connect, BrokerProtocolError, TimeoutError, HandshakeError,
	LimitReached, ShuttingDown, Client, type FerryError,
} from '../src/index.js';
import { FrameReader, decodePayload, encodeFrame, type Payload }
    from '../src/codec.js';
import { within, until } from './util.js';

const WELCOME = encodeFrame({ t: 64, v: 1, server: 'fake', session: 's',
    max_frame: 8388608, max_msg: 1048576 });

interface Fake {
	port: number;
	close(): Promise<void>;
}

/*
 * onHello: what to send instead of WELCOME (null: WELCOME);
 * onFrame: what to do with each request after the handshake.
 */
async function fake(onHello: ((s: net.Socket) => void) | null,
    onFrame: (s: net.Socket, p: Payload) => void): Promise<Fake> {
	const socks = new Set<net.Socket>();
	const srv = net.createServer((s) => {
		socks.add(s);
		s.on('close', () => socks.delete(s));
		s.on('error', () => {});
		const r = new FrameReader(1 << 20);
		let hello = false;
		s.on('data', (chunk) => r.push(chunk, (b, st, en) => {
			const p = decodePayload(b.subarray(st, en));
			if (!hello) {
				hello = true;
				assert.equal(p.t, 1);
				if (onHello)
					onHello(s);
				else
					s.write(WELCOME);
				return;
			}
			onFrame(s, p);
		}));
	});
	await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
	const port = (srv.address() as net.AddressInfo).port;
	return {
		port,
		close: async () => {
			for (const s of socks)
				s.destroy();
			await new Promise((res) => srv.close(res));
		},
	};
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

async function pingFails(f: Fake, reconnect = false): Promise<Error> {
	const c = await within(3000, connect({ port: f.port, reconnect,
	    requestTimeout: 20000 }), 'connect');
	try {
		const t0 = Date.now();
		const e = await within(3000, c.ping().then(() => null, (x) => x),
		    'ping');
		assert.ok(e, 'ping succeeded');
		assert.ok(Date.now() - t0 < 3000);
		return e;
	} finally {
		await c.close(100);
	}
}

test('a truncated frame then a close: a clear error', async () => {
	const f = await fake(null, (s) => {
		s.end(hex('00 00 00 64 83 a1 74 41 a3 72 69 64'));
	});
	try {
		const e = await pingFails(f);
		assert.ok(e instanceof BrokerProtocolError, String(e));
		assert.match(e.message, /inside a frame: 12 of 104 bytes/);
	} finally {
		await f.close();
	}
});

test('a payload truncated inside its length: a clear error', async () => {
	const f = await fake(null, (s) => {
		s.write(hex('00 00 00 03 82 a1 74'));	/* map of 2, cut */
	});
	try {
		const e = await pingFails(f);
		assert.ok(e instanceof BrokerProtocolError, String(e));
		assert.match(e.message, /malformed frame payload/);
	} finally {
		await f.close();
	}
});

test('an unknown frame type: a clear error', async () => {
	const f = await fake(null, (s, p) => {
		s.write(encodeFrame({ t: 99, rid: p.rid as number }));
	});
	try {
		const e = await pingFails(f);
		assert.ok(e instanceof BrokerProtocolError, String(e));
		assert.match(e.message, /type 99/);
	} finally {
		await f.close();
	}
});

test('a payload that is not a map, and a zero length', async () => {
	for (const bytes of [hex('00 00 00 02 92 01'), hex('00 00 00 00')]) {
		const f = await fake(null, (s) => s.write(bytes));
		try {
			const e = await pingFails(f);
			assert.ok(e instanceof BrokerProtocolError, String(e));
		} finally {
			await f.close();
		}
	}
});

test('a huge frame length: refused, not awaited', async () => {
	const f = await fake(null, (s) => s.write(hex('ff ff ff ff 80')));
	try {
		const e = await pingFails(f);
		assert.ok(e instanceof BrokerProtocolError, String(e));
		assert.match(e.message, /above the limit/);
	} finally {
		await f.close();
	}
});

test('with reconnect on, a broken broker still fails the request', async () => {
	const f = await fake(null, (s) => s.write(hex('00 00 00 01 c1')));
	try {
		const e = await pingFails(f, true);
		assert.ok(e instanceof BrokerProtocolError, String(e));
	} finally {
		await f.close();
	}
});

test('handshake: no WELCOME, a wrong frame, an ERR', async () => {
	const silent = await fake(() => {}, () => {});
	try {
		const t0 = Date.now();
		await assert.rejects(connect({ port: silent.port,
		    connectTimeout: 300 }), TimeoutError);
		assert.ok(Date.now() - t0 < 3000);
	} finally {
		await silent.close();
	}
	const wrong = await fake((s) => s.write(encodeFrame({ t: 65 })), () => {});
	try {
		await assert.rejects(within(3000, connect({ port: wrong.port })),
		    /expected WELCOME/);
	} finally {
		await wrong.close();
	}
	const refused = await fake((s) => s.end(encodeFrame({ t: 66, code: 3,
	    msg: 'version 1 not spoken here' })), () => {});
	try {
		await assert.rejects(within(3000, connect({ port: refused.port })),
		    HandshakeError);
	} finally {
		await refused.close();
	}
	const full = await fake((s) => s.end(encodeFrame({ t: 66, code: 11,
	    msg: 'too many connections' })), () => {});
	try {
		await assert.rejects(within(3000, connect({ port: full.port })),
		    LimitReached);
	} finally {
		await full.close();
	}
});

test('nothing listening: connect fails at once', async () => {
	const f = await fake(null, () => {});
	const port = f.port;
	await f.close();
	await assert.rejects(within(3000, connect({ port, reconnect: false })),
	    /ECONNREFUSED|connection/);
});

test('unsolicited ERRs of any code reach error; E_SHUTDOWN reconnects',
    async () => {
	let conns = 0;
	const f = await fake(null, (s, p) => {
		if (p.t !== 9)
			return;
		/* a notice about subscription 5, with a code from a later
		 * protocol version, then the PING's reply */
		s.write(encodeFrame({ t: 66, code: 99, sid: 5, msg: 'later' }));
		s.write(encodeFrame({ t: 65, rid: p.rid as number }));
	});
	const srvShutdown = await fake((s) => {
		s.write(WELCOME);
		if (++conns === 1)
			s.end(encodeFrame({ t: 66, code: 16, msg: 'shutting down' }));
	}, () => {});
	const c = await within(3000, connect({ port: f.port }), 'connect');
	const d = new Client({ port: srvShutdown.port,
	    reconnect: { initialDelay: 10, maxDelay: 50 } });
	const derrs: FerryError[] = [];
	d.on('error', (e: FerryError) => derrs.push(e));
	await within(3000, d.start(), 'connect');
	try {
		const errs: FerryError[] = [];
		c.on('error', (e: FerryError) => errs.push(e));
		await within(3000, c.ping(), 'ping');
		assert.equal(errs.length, 1);
		assert.equal(errs[0].code, 99);
		assert.equal(errs[0].sid, 5n);
		assert.equal(errs[0].retryable, false);
		assert.equal(errs[0].message, 'later');
		assert.equal(c.status, 'open');
		await until(() => d.counters.reconnects >= 1, 3000, 'reconnect');
		assert.ok(derrs.some((e) => e instanceof ShuttingDown),
		    derrs.map(String).join());
	} finally {
		await c.close(100);
		await d.close(100);
		await f.close();
		await srvShutdown.close();
	}
});

test('a request answered after thousands of later ones still resolves',
    async () => {
	/* the pending table is a ring of 4096 by rid: the first PING stays
	 * unanswered while 5000 later ones come and go, then is answered */
	let held = 0;
	let sock: net.Socket | null = null;
	const f = await fake(null, (s, p) => {
		sock = s;
		if (p.t !== 9)
			return;
		if (!held) {
			held = p.rid as number;
			return;
		}
		s.write(encodeFrame({ t: 65, rid: p.rid as number }));
	});
	const c = await within(3000, connect({ port: f.port }), 'connect');
	try {
		let first = false;
		const p1 = c.ping().then(() => { first = true; });
		for (let i = 0; i < 5000; i += 500)
			await within(5000, Promise.all(Array.from({ length: 500 },
			    () => c.ping())), 'pings');
		assert.equal(first, false);
		assert.equal(c.outstanding, 1);
		sock!.write(encodeFrame({ t: 65, rid: held }));
		await within(3000, p1, 'the held ping');
		assert.equal(c.outstanding, 0);
	} finally {
		await c.close(100);
		await f.close();
	}
});

test('a publish nobody confirms times out, never before its timeout',
    async () => {
	const f = await fake(null, () => {});	/* takes PUBs, answers none */
	const c = await within(3000, connect({ port: f.port }), 'connect');
	try {
		for (const timeout of [275, 120]) {
			const t0 = performance.now();
			const e = await within(3000, c.publish('t', Buffer.from('x'),
			    { timeout }).then(() => null, (x: Error) => x), 'publish');
			const ms = performance.now() - t0;
			assert.ok(e instanceof TimeoutError, String(e));
			assert.ok(ms >= timeout && ms < 2000, `${ms} ms`);
		}
		const t0 = performance.now();
		await assert.rejects(within(3000, c.publishMany('t',
		    [Buffer.from('a'), Buffer.from('b')], { timeout: 150 }),
		    'publishMany'), TimeoutError);
		assert.ok(performance.now() - t0 >= 150);
		assert.equal(c.outstanding, 0);
	} finally {
		await c.close(100);
		await f.close();
	}
});

test('a publish sent again after a reconnect is the one made, options ' +
    'changed since or not', async () => {
	/* the first PUB is cut before its confirm; the resend is confirmed */
	const seen: Payload[] = [];
	const f = await fake(null, (s, p) => {
		if (p.t !== 2)
			return;
		seen.push({ ...p, body: Buffer.from(p.body as Uint8Array) });
		if (seen.length === 1)
			s.destroy();
		else
			s.write(encodeFrame({ t: 65, rid: p.rid as number,
			    ids: [p.id as string] }));
	});
	const c = await within(3000, connect({ port: f.port,
	    reconnect: { initialDelay: 10, maxDelay: 50 } }), 'connect');
	try {
		const opts = { id: 'first', correlationId: 'c-1', delay: 5,
		    headers: { h: '1' } };
		const p = c.publish('t', Buffer.from('x'), opts);
		opts.id = 'second';
		opts.correlationId = 'c-2';
		opts.delay = 9;
		assert.equal(await within(5000, p, 'publish'), 'first');
		assert.equal(seen.length, 2);
		for (const q of seen) {
			assert.equal(q.id, 'first');
			assert.equal(q.corr, 'c-1');
			assert.equal(q.delay, 5);
			assert.deepEqual(q.hdr, { h: '1' });
			assert.equal((q.body as Buffer).toString(), 'x');
		}
		/* the same producer id and sequence: a duplicate to the broker */
		assert.equal(seen[1].pid, seen[0].pid);
		assert.equal(seen[1].seq, seen[0].seq);
		assert.notEqual(seen[1].rid, undefined);
	} finally {
		await c.close(100);
		await f.close();
	}
});
