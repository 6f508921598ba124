/*
 * What the broker says unasked (PROTOCOL.md section 5: ERR without rid)
 * and in WELCOME (boot, idle), surfaced to the application, through a
 * real ferryd: a deleted group, an idle timeout, a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	connect, SubscriptionDeleted, IdleTimeout, type FerryError,
} from '../src/index.js';
import { startFerryd, sleep } from './ferryd.js';
import { within, until, topic } from './util.js';

test('a deleted group: SubscriptionDeleted to error, naming the sid',
    async () => {
	const b = await startFerryd(['--fsync', 'never']);
	const c = await connect({ port: b.port, name: 'events' });
	try {
		const errs: FerryError[] = [];
		c.on('error', (e: FerryError) => errs.push(e));
		const t = topic('deleted');
		const sub = await c.subscribe(t, () => {}, { group: 'g' });
		const sid = sub.sid;
		assert.ok(sid > 0n);
		await c.delete(t, 'g');
		await until(() => errs.length > 0, 3000, 'error event');
		assert.ok(errs[0] instanceof SubscriptionDeleted, String(errs[0]));
		assert.equal(errs[0].sid, sid);
		assert.equal(errs[0].code, 15);
		assert.ok(sub.closed);
		assert.equal(sub.error, errs[0]);
		await c.ping();	/* the connection stays */
	} finally {
		await c.close(1000);
		await b.dispose();
	}
});

test('idle_timeout: the client pings and stays; without keepalive, ' +
    'IdleTimeout surfaces and it reconnects', async () => {
	/* 2 s: the keepalive (a ping after 667 ms of silence) then has more
	 * than a second to spare when the machine is loaded */
	const b = await startFerryd(['--fsync', 'never', '--idle-timeout', '2']);
	const live = await connect({ port: b.port, name: 'keepalive' });
	const mute = await connect({ port: b.port, name: 'mute',
	    keepalive: false, reconnect: { initialDelay: 20, maxDelay: 100 } });
	try {
		assert.equal(live.welcome.idle, 2000);
		const lost: unknown[] = [];
		live.on('disconnect', (e) => lost.push(e));
		const errs: FerryError[] = [];
		live.on('error', (e: FerryError) => errs.push(e));
		const muteErrs: FerryError[] = [];
		mute.on('error', (e: FerryError) => muteErrs.push(e));
		/* a worker waiting for messages: nothing to send for 3 s */
		const t = topic('idle');
		const got: string[] = [];
		await live.subscribe(t, (m) => {
			got.push(m.text());
		}, { group: 'g' });
		await sleep(3000);
		assert.deepEqual(lost, []);
		assert.deepEqual(errs, []);
		assert.equal(live.counters.reconnects, 0);
		await within(3000, until(() => muteErrs.some((e) =>
		    e instanceof IdleTimeout), 3000, 'E_IDLE on the mute client'));
		assert.equal(muteErrs.find((e) => e instanceof IdleTimeout)!.code, 20);
		await until(() => mute.counters.reconnects >= 1, 3000, 'reconnect');
		/* and the live worker still gets its messages */
		await mute.publish(t, Buffer.from('after'));
		await until(() => got.length === 1, 3000, 'delivery');
		assert.equal(got[0], 'after');
	} finally {
		await live.close(1000);
		await mute.close(1000);
		await b.dispose();
	}
});

test('a broker restart is told by WELCOME boot', async () => {
	const b = await startFerryd(['--fsync', 'never']);
	const c = await connect({ port: b.port,
	    reconnect: { initialDelay: 20, maxDelay: 200 } });
	try {
		c.on('error', () => {});
		const boot0 = c.welcome.boot;
		assert.match(boot0, /^[0-9a-f-]{36}$/);
		const restarts: string[][] = [];
		c.on('restart', (boot: string, prev: string) =>
		    restarts.push([boot, prev]));
		let reconnects = 0;
		c.on('reconnect', () => reconnects++);
		await b.kill9();
		await b.restart();
		await until(() => reconnects >= 1, 5000, 'reconnect');
		assert.equal(restarts.length, 1);
		assert.equal(restarts[0][1], boot0);
		assert.equal(restarts[0][0], c.welcome.boot);
		assert.notEqual(c.welcome.boot, boot0);
		await c.ping();
	} finally {
		await c.close(1000);
		await b.dispose();
	}
});
