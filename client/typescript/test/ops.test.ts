/* Every client operation against the real ferryd. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
	connect, type Client, type Message, StaleLease, QueueFull, ModeError,
	NoSubscribers, TimeoutError, AbortError, BadName, SubscriptionDeleted,
	NotFound, MessageTooBig, BadArgument,
} from '../src/index.js';
import { startFerryd, sleep, type Broker } from './ferryd.js';
import { within, until, nextMsg, topic } from './util.js';

let broker: Broker;
let c: Client;

before(async () => {
	broker = await startFerryd(['--retry-backoff-base=0.02',
	    '--retry-backoff-max=0.1']);
	c = await connect({ port: broker.port, name: 'ops-test',
	    requestTimeout: 10000 });
});

after(async () => {
	await c?.close();
	await broker?.dispose();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function groupRow(t: string, g = 'default') {
	return (await c.stats(t)).find((r) => r.group === g) ?? {};
}

test('welcome and ping', async () => {
	assert.match(c.welcome.server, /^ferryd/);
	assert.equal(c.welcome.maxFrame, 8388608);
	assert.equal(c.welcome.maxMsg, 1048576);
	assert.ok((await c.ping()) >= 0);
});

test('confirmed publish returns the broker id; a given id is kept', async () => {
	const t = topic('pub');
	const id = await c.publish(t, Buffer.from('a'));
	assert.match(id!, UUID);
	assert.equal(await c.publish(t, Buffer.from('b'), { id: 'order-42' }),
	    'order-42');
	/* the same id again is a duplicate: confirmed, not enqueued */
	assert.equal(await c.publish(t, Buffer.from('b'), { id: 'order-42' }),
	    'order-42');
	const s = await c.stats(t);
	assert.equal(s.find((r) => !r.group)?.ready, 2);
});

test('fire-and-forget and batch publish, consumed in order', async () => {
	const t = topic('batch');
	const it = c.messages(t, { prefetch: 100 })[Symbol.asyncIterator]();
	await c.publish(t, Buffer.from('ff-1'), { confirm: false });
	const ids = await c.publishBatch(t, [
		{ data: Buffer.from('b-1') },
		{ data: Buffer.from('b-2'), id: 'mine' },
		{ data: { n: 3 } },
	]);
	assert.equal(ids.length, 3);
	assert.equal(ids[1], 'mine');
	await c.publishBatch(t, [{ data: Buffer.from('ff-2') }],
	    { confirm: false });
	const got: string[] = [];
	for (let i = 0; i < 5; i++) {
		const m = await nextMsg(it);
		got.push(m.text());
		await m.ack();
	}
	assert.deepEqual(got, ['ff-1', 'b-1', 'b-2', '{"n":3}', 'ff-2']);
	await it.return!();
});

test('publishMany: one PUB each, ids in order, one promise', async () => {
	const t = topic('many');
	const it = c.messages(t, { prefetch: 100 })[Symbol.asyncIterator]();
	const bodies = Array.from({ length: 50 }, (_, i) => Buffer.from(`m-${i}`));
	const ids = await c.publishMany(t, bodies);
	assert.equal(ids.length, 50);
	for (const id of ids)
		assert.match(id, UUID);
	assert.equal(new Set(ids).size, 50);
	/* JSON and headers, as publish() sends them; then unconfirmed */
	const j = await c.publishMany(t, [{ a: 1 }, Buffer.from('raw')],
	    { headers: { tenant: 'acme' } });
	assert.equal(j.length, 2);
	assert.deepEqual(await c.publishMany(t, [Buffer.from('ff-a'),
	    Buffer.from('ff-b')], { confirm: false }), []);
	assert.deepEqual(await c.publishMany(t, []), []);
	for (let i = 0; i < 50; i++) {
		const m = await nextMsg(it);
		assert.equal(m.text(), `m-${i}`);
		assert.equal(m.id, ids[i]);	/* each id is its message's */
		await m.ack();
	}
	const mj = await nextMsg(it);
	assert.deepEqual(mj.json(), { a: 1 });
	assert.equal(mj.id, j[0]);
	assert.equal(mj.headers['content-type'], 'application/json');
	assert.equal(mj.headers.tenant, 'acme');
	const mr = await nextMsg(it);
	assert.equal(mr.text(), 'raw');
	assert.equal(mr.headers['content-type'], undefined);
	assert.equal(mr.headers.tenant, 'acme');
	for (const want of ['ff-a', 'ff-b'])
		assert.equal((await nextMsg(it)).text(), want);
	await it.return!();
});

test('publishMany: a refusal rejects its promise; a bad body sends none',
    async () => {
	const t = topic('many-err');
	/* mandatory with no group: every PUB refused, the promise rejects */
	await assert.rejects(c.publishMany(t, [Buffer.from('a'),
	    Buffer.from('b')], { mandatory: true }), NoSubscribers);
	/* a targeted publish to a group that does not exist */
	await assert.rejects(c.publishMany(t, [Buffer.from('a')],
	    { group: 'nope' }), NotFound);
	/* one body too big: refused before anything is sent */
	await assert.rejects(c.publishMany(t, [Buffer.from('ok'),
	    Buffer.alloc(c.welcome.maxMsg + 1)]), MessageTooBig);
	/* ids are per message */
	await assert.rejects(c.publishMany(t, [Buffer.from('a')],
	    { id: 'x' }), BadArgument);
	assert.equal((await c.stats(t)).find((r) => !r.group)?.ready ?? 0, 0);
	/* the client still works, and later publishes are unaffected */
	await c.subscribe(t, () => {}, { group: 'g' }).then((s) => s.unsubscribe());
	const ids = await c.publishMany(t, [Buffer.from('x'), Buffer.from('y')]);
	assert.equal(ids.length, 2);
	assert.equal((await groupRow(t, 'g')).ready, 2);
});

test('JSON data, headers, reply_to and correlation id travel', async () => {
	const t = topic('json');
	const it = c.messages(t)[Symbol.asyncIterator]();
	await c.publish(t, { order: 7, items: ['x'] },
	    { headers: { tenant: 'acme' }, correlationId: 'c-1' });
	const m = await nextMsg(it);
	assert.deepEqual(m.json(), { order: 7, items: ['x'] });
	assert.equal(m.headers['content-type'], 'application/json');
	assert.equal(m.headers.tenant, 'acme');
	assert.equal(m.correlationId, 'c-1');
	assert.equal(m.attempt, 1);
	assert.equal(m.topic, t);
	assert.ok(Math.abs(m.timestamp - Date.now()) < 60000);
	assert.equal(typeof m.lease, 'bigint');
	/* PROTOCOL.md keeps lease tokens below 2^53 */
	assert.ok(m.lease > 0n && m.lease < 1n << 53n);
	await m.ack();
	/* raw bytes: no content-type added */
	await c.publish(t, Buffer.from([0, 255]));
	const r = await nextMsg(it);
	assert.deepEqual([...r.body], [0, 255]);
	assert.equal(r.headers['content-type'], undefined);
	await r.ack();
	await it.return!();
});

test('delay holds a message back', async () => {
	const t = topic('delay');
	const it = c.messages(t)[Symbol.asyncIterator]();
	const t0 = Date.now();
	await c.publish(t, Buffer.from('later'), { delay: 300 });
	const m = await nextMsg(it);
	assert.ok(Date.now() - t0 >= 280, `delivered after ${Date.now() - t0} ms`);
	await m.ack();
	await it.return!();
});

test('ttl: a message nobody takes in time is dead-lettered', async () => {
	const t = topic('ttl');
	const sub = c.messages(t, { group: 'g' });
	await sub.ready;
	await sub.unsubscribe();	/* the durable group stays */
	await c.publish(t, Buffer.from('stale'), { ttl: 50 });
	const dlq = c.messages(`${t}.dlq`)[Symbol.asyncIterator]();
	const m = await nextMsg(dlq);
	assert.equal(m.text(), 'stale');
	assert.equal(m.headers['dlq-reason'], 'expired');
	await m.ack();
	await dlq.return!();
});

test('handler: resolve acks, throw nacks with the error text', async () => {
	const t = topic('handler');
	const seen: number[] = [];
	const sub = await c.subscribe(t, async (m) => {
		seen.push(m.attempt);
		if (m.text() === 'bad')
			throw new Error('cannot parse order');
	}, { group: 'workers', maxAttempts: 2 });
	const good = await c.publish(t, Buffer.from('good'));
	await c.publish(t, Buffer.from('bad'));
	const dlq = c.messages(`${t}.dlq`)[Symbol.asyncIterator]();
	const d = await nextMsg(dlq);
	assert.equal(d.text(), 'bad');
	assert.equal(d.headers['dlq-reason'], 'nacked');
	assert.equal(d.headers['dlq-attempts'], '2');
	assert.equal(d.history.length, 2);
	assert.equal(d.history[0].cause, 'nacked');
	assert.equal(d.history[0].error, 'cannot parse order');
	assert.equal(d.history[0].by, 'ops-test');
	await d.ack();
	/* (STATS would not do: ferryd counts a dead-lettering in `ack`) */
	await until(async () => (await c.trace(good!)).some((e) => e.ev ===
	    'acked'), 3000, 'the good message acked');
	assert.deepEqual(seen.sort(), [1, 1, 2]);
	await sub.unsubscribe();
	await dlq.return!();
});

test('nack with a delay, touch, and an iterator loop', async () => {
	const t = topic('iter');
	await c.publish(t, Buffer.from('x'));
	const t0 = Date.now();
	let n = 0;
	for await (const m of c.messages(t, { ackTimeout: 5000 })) {
		n++;
		if (m.attempt === 1) {
			await m.touch();
			await m.nack({ delay: 200, error: 'later' });
			continue;
		}
		assert.equal(m.attempt, 2);
		assert.ok(Date.now() - t0 >= 190);
		await m.ack();
		break;
	}
	assert.equal(n, 2);
	/* leaving the loop unsubscribed */
	assert.equal((await groupRow(t)).members ?? 0, 0);
});

test('a handler that runs past half its lease is touched', async () => {
	const t = topic('touch');
	let calls = 0;
	const done = new Promise<void>((res) => {
		void c.subscribe(t, async () => {
			calls++;
			await sleep(2500);	/* the lease is 1000 ms */
			res();
		}, { ackTimeout: 1000 });
	});
	await c.publish(t, Buffer.from('slow'));
	await within(5000, done, 'slow handler');
	await until(async () => (await groupRow(t)).ack === 1, 3000, 'acked');
	const row = await groupRow(t);
	assert.equal(calls, 1);
	assert.equal(row.timeout ?? 0, 0);
	assert.equal(row.dlv, 1);
});

test('an expired lease is refused with StaleLease', async () => {
	const t = topic('stale');
	const it = c.messages(t, { ackTimeout: 100 })[Symbol.asyncIterator]();
	await c.publish(t, Buffer.from('s'));
	const m = await nextMsg(it);
	const again = await nextMsg(it, 5000);	/* redelivered after 100 ms */
	assert.equal(again.attempt, 2);
	await assert.rejects(m.ack(), StaleLease);
	await again.ack();
	await it.return!();
});

test('at-most-once deliveries have nothing to settle', async () => {
	const t = topic('amo');
	const it = c.messages(t, { mode: 'at-most-once' })[Symbol.asyncIterator]();
	await c.publish(t, Buffer.from('once'));
	const m = await nextMsg(it);
	assert.equal(m.lease, 0n);
	await assert.rejects(m.ack(), ModeError);
	await it.return!();
});

test('a full group refuses with QueueFull, retryable', async () => {
	const t = topic('full');
	const sub = c.messages(t, { group: 'small', maxMsgs: 1 });
	await sub.ready;
	await sub.unsubscribe();
	await c.publish(t, Buffer.from('1'));
	const e = await c.publish(t, Buffer.from('2')).catch((x) => x);
	assert.ok(e instanceof QueueFull, String(e));
	assert.equal(e.retryable, true);
	assert.equal(e.code, 12);
});

test('bad names and oversize bodies are refused', async () => {
	await assert.rejects(c.publish('no spaces', Buffer.from('x')), BadName);
	await assert.rejects(c.subscribe('ok', () => {}, { group: 'bad group' }),
	    BadName);
	const it = c.messages('bad topic')[Symbol.asyncIterator]();
	await assert.rejects(within(3000, it.next()), BadName);
	await assert.rejects(c.publish('x', Buffer.alloc(c.welcome.maxMsg + 1)),
	    MessageTooBig);
});

test('fan-out: two groups each get every message', async () => {
	const t = topic('fan');
	const sa = c.messages(t, { group: 'a' });
	const sb = c.messages(t, { group: 'b' });
	await Promise.all([sa.ready, sb.ready]);
	const a = sa[Symbol.asyncIterator]();
	const b = sb[Symbol.asyncIterator]();
	await c.publish(t, Buffer.from('e1'));
	for (const it of [a, b]) {
		const m = await nextMsg(it);
		assert.equal(m.text(), 'e1');
		await m.ack();
		await it.return!();
	}
});

test('request-reply: reply, timeout, no responder, abort', async () => {
	const t = topic('rpc');
	await assert.rejects(c.request(t, Buffer.from('x')), NoSubscribers);
	const srv = await connect({ port: broker.port, name: 'responder' });
	try {
		await srv.subscribe(t, async (m: Message) => {
			if (m.text() === 'ignore')
				return;
			await m.reply(Buffer.from(m.text().toUpperCase()));
		});
		const r = await c.request(t, Buffer.from('hello'), { timeout: 3000 });
		assert.equal(r.text(), 'HELLO');
		const t0 = Date.now();
		await assert.rejects(c.request(t, Buffer.from('ignore'),
		    { timeout: 200 }), TimeoutError);
		assert.ok(Date.now() - t0 < 2000);
		const ac = new AbortController();
		const p = c.request(t, Buffer.from('ignore'),
		    { timeout: 5000, signal: ac.signal });
		setTimeout(() => ac.abort(), 50);
		await assert.rejects(within(2000, p), AbortError);
		const r2 = await c.request(t, { q: 1 });
		assert.deepEqual(r2.json(), { Q: 1 });	/* the JSON text, upper-cased */
	} finally {
		await srv.close();
	}
});

test('inspection: stats, inflight, peek, trace, delete', async () => {
	const t = topic('inspect');
	const it = c.messages(t, { group: 'g', prefetch: 1 })[
	    Symbol.asyncIterator]();
	const id1 = await c.publish(t, Buffer.from('one'));
	await c.publish(t, Buffer.from('two'));
	const m = await nextMsg(it);
	assert.equal(m.id, id1);
	const inf = await c.inflight(t, 'g');
	assert.equal(inf.length, 1);
	assert.equal(inf[0].id, id1);
	assert.equal(inf[0].by, 'ops-test');
	const head = await c.peek(t, 'g');
	assert.equal(head.text(), 'two');
	assert.equal(head.lease, 0n);
	await assert.rejects(head.ack(), ModeError);
	await m.ack();
	const ev = (await c.trace(id1!)).map((e) => e.ev);
	assert.deepEqual(ev.slice(0, 3), ['published', 'delivered', 'acked']);
	await assert.rejects(c.peek(t, 'nope'), NotFound);
	await (await nextMsg(it)).ack();
	/* deleting the group ends the subscription */
	await c.delete(t, 'g');
	const e = await within(3000, it.next().catch((x) => x));
	assert.ok(e instanceof SubscriptionDeleted, String(e));
	await assert.rejects(c.delete(t, 'g'), NotFound);
	/* the broker-wide row, as libferry's ferry_stats_broker() */
	const b = await c.statsBroker();
	assert.ok(Number(b.conns) >= 1, JSON.stringify(b));
	assert.ok(Number(b.topics) >= 1 && Number(b.pub) >= 2);
	assert.equal(typeof b.up, 'number');
});
