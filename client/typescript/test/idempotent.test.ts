/*
 * The idempotent producer, made deterministic: a proxy on 127.0.0.1
 * between the client and ferryd passes the first confirmed PUB to the
 * broker, lets it store the message, and cuts both connections before the
 * confirm can reach the client. The client reconnects (through the proxy,
 * which then passes everything) and sends the publish again with the same
 * pid and seq: the broker must see a duplicate, and store the message once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect } from '../src/index.js';
import { FrameReader, decodePayload } from '../src/codec.js';
import { startFerryd, sleep } from './ferryd.js';
import { within, topic } from './util.js';

async function cuttingProxy(target: number) {
	let cut = false;
	let pubsSeen = 0;
	const socks = new Set<net.Socket>();
	const srv = net.createServer((client) => {
		const up = net.connect(target, '127.0.0.1');
		socks.add(client);
		socks.add(up);
		const drop = () => {
			client.destroy();
			up.destroy();
		};
		client.on('error', drop);
		up.on('error', drop);
		client.on('close', drop);
		up.on('close', drop);
		const r = new FrameReader(1 << 24);
		client.on('data', (chunk: Buffer) => {
			up.write(chunk);
			if (cut)
				return;
			r.push(chunk, (b, st, en) => {
				const f = decodePayload(b.subarray(st, en));
				if (f.t === 2 && f.rid && !cut) {
					cut = true;
					pubsSeen++;
					/* the broker stores it; its OK never gets through */
					client.pause();
					up.removeAllListeners('data');
					setTimeout(drop, 300);
				}
			});
		});
		up.on('data', (chunk: Buffer) => client.write(chunk));
	});
	await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
	return {
		port: (srv.address() as net.AddressInfo).port,
		get cut() { return cut; },
		get pubsSeen() { return pubsSeen; },
		close: async () => {
			for (const s of socks)
				s.destroy();
			await new Promise((res) => srv.close(res));
		},
	};
}

test('a publish retried after a lost confirm is stored once', async () => {
	const b = await startFerryd();
	const proxy = await cuttingProxy(b.port);
	const direct = await connect({ port: b.port });
	const c = await connect({ port: proxy.port, name: 'retrying-producer',
	    reconnect: { initialDelay: 50, maxDelay: 200, maxAttempts: 50 } });
	try {
		const t = topic('idem');
		const id = await within(10000, c.publish(t, Buffer.from('once')),
		    'publish');
		assert.ok(proxy.cut, 'the proxy did not cut');
		assert.ok(c.counters.reconnects >= 1);
		assert.equal(c.counters.resent, 1);
		/* one message stored, and the retry seen as its duplicate */
		const row = (await direct.stats(t)).find((r) => !r.group);
		assert.equal(row?.ready, 1);
		assert.equal(row?.enq, 1);
		const ev = (await direct.trace(id!)).map((e) => e.ev);
		assert.deepEqual(ev, ['published', 'duplicate']);
		/* and the client goes on publishing normally */
		await c.publish(t, Buffer.from('next'));
		const row2 = (await direct.stats(t)).find((r) => !r.group);
		assert.equal(row2?.ready, 2);
	} finally {
		await c.close(500);
		await direct.close(500);
		await proxy.close();
		await b.dispose();
	}
});

test('without pid and seq a lost confirm fails the publish', async () => {
	/*
	 * The control: the same cut, with idempotence off. The client cannot
	 * retry safely, so it fails with ConnectionLost; the message was
	 * stored all the same (the outcome really was unknown).
	 */
	const b = await startFerryd();
	const proxy = await cuttingProxy(b.port);
	const direct = await connect({ port: b.port });
	const c = await connect({ port: proxy.port, idempotent: false,
	    reconnect: { initialDelay: 50, maxDelay: 200, maxAttempts: 50 } });
	try {
		const t = topic('nonidem');
		/* not resendable: no pid/seq and no own id, so it fails instead */
		await assert.rejects(within(10000, c.publish(t, Buffer.from('x')),
		    'publish'), /connection|closed/);
		await sleep(100);
		const row = (await direct.stats(t)).find((r) => !r.group);
		assert.equal(row?.ready, 1, 'the first attempt was stored');
	} finally {
		await c.close(500);
		await direct.close(500);
		await proxy.close();
		await b.dispose();
	}
});
