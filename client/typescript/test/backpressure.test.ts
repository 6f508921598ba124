/*
 * A fire-and-forget producer is made to wait after a few hundred KiB when
 * ferryd reads nothing (PROTOCOL.md section 1, "Keep the producer's side
 * short"): every byte queued on this host is latency once ferryd slows it.
 * Node cannot set TCP_NOTSENT_LOWAT, so the kernel may hold up to tcp_wmem's
 * maximum besides: the bound is that plus 1.5 MiB.  With the client's old
 * 4 MiB high-water mark 6.6 MB were taken here, now 3.5 MB.
 */
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../src/index.js';
import { startFerryd } from './ferryd.js';

function kernelSendMax(): number {
	try {
		const f = readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8');
		return Number(f.trim().split(/\s+/)[2]) || 4194304;
	} catch {
		return 4194304;
	}
}

const BOUND = kernelSendMax() + 1536 * 1024;

test('a stalled broker makes a fire-and-forget producer wait soon', async () => {
	const broker = await startFerryd(['--fsync', 'never']);
	const c = await connect({ port: broker.port, name: 'stall-test',
	    reconnect: false });
	const body = Buffer.alloc(100, 's');
	let sent = 0;
	process.kill(broker.pid, 'SIGSTOP');
	try {
		while (sent < 16 * 1024 * 1024) {	/* bounded: 16 MB */
			const p = c.publish('stall', body, { confirm: false });
			let timer: NodeJS.Timeout | undefined;
			const waited = await Promise.race([
				Promise.resolve(p).then(() => false),
				new Promise<boolean>((r) => {
					timer = setTimeout(() => r(true), 500);
				}),
			]);
			clearTimeout(timer);
			if (waited)
				break;
			sent += body.length;
		}
	} finally {
		process.kill(broker.pid, 'SIGCONT');
	}
	await c.close();
	await broker.dispose();
	assert.ok(sent < BOUND, `${sent} bytes taken while ferryd read nothing`);
});

/*
 * Waiting for the socket to drain leaves no listener behind: each wait
 * used to race events.once() for 'drain' and 'close', and the loser's
 * listeners stayed on the socket until it closed (Node warned at 11).
 */
test('congested publishes leave no listeners on the socket', async () => {
	const broker = await startFerryd(['--fsync', 'never']);
	const c = await connect({ port: broker.port, name: 'drain-test',
	    reconnect: false });
	const sock = (c as unknown as { conn: { sock: import('node:net').Socket } })
	    .conn.sock;
	const before = sock.listenerCount('close') + sock.listenerCount('error');
	const body = Buffer.alloc(8192, 'd');
	let waits = 0;
	try {
		for (let cycle = 0; cycle < 12; cycle++) {
			process.kill(broker.pid, 'SIGSTOP');
			let pending: Promise<unknown> | undefined;
			/* bounded: 64 MB a cycle */
			for (let i = 0; i < 8192 && !pending; i++) {
				const p = c.publish('drain', body, { confirm: false });
				let timer: NodeJS.Timeout | undefined;
				const waited = await Promise.race([
					Promise.resolve(p).then(() => false),
					new Promise<boolean>((r) => {
						timer = setTimeout(() => r(true), 200);
					}),
				]);
				clearTimeout(timer);
				if (waited)
					pending = p;
			}
			process.kill(broker.pid, 'SIGCONT');
			assert.ok(pending, `cycle ${cycle}: never congested`);
			await pending;
			waits++;
		}
	} finally {
		process.kill(broker.pid, 'SIGCONT');
	}
	const after = sock.listenerCount('close') + sock.listenerCount('error');
	await c.close();
	await broker.dispose();
	assert.equal(waits, 12);
	assert.equal(after, before, `${after - before} listeners left behind`);
});
