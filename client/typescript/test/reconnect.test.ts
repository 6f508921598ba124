/*
 * Reconnect: ferryd killed with SIGKILL while confirmed publishes are in
 * flight, restarted on the same data directory and port. Every publish
 * must resolve (none lost) and every message be stored once (none twice).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Message, ConnectionLost } from '../src/index.js';
import { startFerryd, sleep } from './ferryd.js';
import { within, until, topic } from './util.js';

test('kill -9 and restart: no confirmed publish lost, none twice', async () => {
	const b = await startFerryd(['--ack-timeout=2']);
	const t = topic('crash');
	const c = await connect({ port: b.port, name: 'crash-producer',
	    requestTimeout: 20000,
	    reconnect: { initialDelay: 50, maxDelay: 400, maxAttempts: 100 } });
	const sub = await connect({ port: b.port, name: 'crash-consumer',
	    reconnect: { initialDelay: 50, maxDelay: 400, maxAttempts: 100 } });
	try {
		const N = 400;
		const promises: Array<Promise<string | undefined>> = [];
		for (let i = 0; i < N / 2; i++)
			promises.push(c.publish(t, Buffer.from(`m${i}`)));
		await within(10000, Promise.all(promises), 'first half');
		/*
		 * A quarter in flight when the broker dies (some stored, some
		 * confirmed, some neither), a quarter published while it is dead.
		 */
		for (let i = N / 2; i < 3 * N / 4; i++)
			promises.push(c.publish(t, Buffer.from(`m${i}`)));
		await new Promise((r) => setImmediate(r));	/* written */
		await b.kill9();
		for (let i = 3 * N / 4; i < N; i++)
			promises.push(c.publish(t, Buffer.from(`m${i}`)));
		await sleep(300);
		await b.restart();
		const ids = await within(20000, Promise.all(promises), 'all confirms');
		assert.equal(ids.length, N);
		assert.ok(ids.every((x) => typeof x === 'string'));
		assert.ok(c.counters.reconnects >= 1);
		assert.ok(c.counters.resent >= 1, 'nothing was sent again');

		/* the consumer connected before the crash subscribes again */
		const seen = new Map<string, number>();
		await sub.subscribe(t, (m: Message) => {
			seen.set(m.text(), (seen.get(m.text()) ?? 0) + 1);
		}, { group: 'g', prefetch: 100 });
		await until(() => seen.size === N, 15000, `all ${N} delivered`);
		await sleep(200);
		const twice = [...seen].filter(([, n]) => n > 1);
		assert.deepEqual(twice, [], 'messages enqueued twice');

		/* and keeps receiving across a second crash */
		await b.kill9();
		await sleep(200);
		await b.restart();
		await within(10000, c.publish(t, Buffer.from('after')), 'publish');
		await until(() => seen.has('after'), 10000, 'delivered after restart');
		assert.ok(sub.counters.reconnects >= 1);
	} finally {
		await c.close(1000);
		await sub.close(1000);
		await b.dispose();
	}
});

test('a publish made while disconnected goes out on reconnect', async () => {
	const b = await startFerryd();
	const c = await connect({ port: b.port,
	    reconnect: { initialDelay: 50, maxDelay: 200, maxAttempts: 100 } });
	try {
		await b.stop();
		await until(() => c.status === 'reconnecting', 5000, 'noticed');
		const p = c.publish('offline', Buffer.from('queued'));
		await b.restart();
		assert.ok(await within(10000, p, 'publish'));
		const s = await c.stats('offline');
		assert.equal(s.find((r) => !r.group)?.ready, 1);
	} finally {
		await c.close(1000);
		await b.dispose();
	}
});

test('without reconnect, a lost connection fails what is pending', async () => {
	const b = await startFerryd();
	const c = await connect({ port: b.port, reconnect: false });
	const srv = await connect({ port: b.port, reconnect: false });
	try {
		await srv.subscribe('silent', () => new Promise(() => {}));
		const t0 = Date.now();
		const p = c.request('silent', Buffer.from('x'), { timeout: 10000 })
		    .catch((e) => e);
		await sleep(100);	/* published, waiting for a reply */
		await b.kill9();
		const e = await within(5000, p, 'request');
		assert.ok(e instanceof ConnectionLost, String(e));
		assert.ok(Date.now() - t0 < 5000);
		assert.equal(c.status, 'closed');
		await assert.rejects(c.ping(), /closed|connection/);
	} finally {
		await c.close(100);
		await srv.close(100);
		await b.dispose();
	}
});
