/*
 * bench.ts - one producer connection publishes --msgs bodies of --size
 * bytes while one consumer connection (at-least-once, acks) receives
 * them; the same measure as `ferry bench` (client/bench.c): publish rate
 * = published / (last publish done - start), receive rate = received /
 * (last receive - start). Also counts lost and duplicated messages.
 *
 *   FERRY_PORT=4470 node dist/bench/bench.js [--msgs N] [--size B]
 *       [--confirm] [--window W] [--prefetch P] [--json]
 *
 * Without FERRY_PORT it starts a ferryd of its own ($FERRYD, else
 * ../../build/broker/ferryd) on a free port and a temporary directory.
 */
import { connect, type Message } from '../src/index.js';
import { startFerryd, type Broker } from '../test/ferryd.js';

interface Opts {
	msgs: number;
	size: number;
	confirm: boolean;
	window: number;
	prefetch: number;
	json: boolean;
}

function parse(argv: string[]): Opts {
	const o: Opts = { msgs: 100000, size: 128, confirm: false, window: 1000,
	    prefetch: 1000, json: false };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const num = () => {
			const v = Number(argv[++i]);
			if (!Number.isInteger(v) || v <= 0)
				throw new Error(`${a}: a positive integer is needed`);
			return v;
		};
		if (a === '--msgs') o.msgs = num();
		else if (a === '--size') o.size = num();
		else if (a === '--window') o.window = num();
		else if (a === '--prefetch') o.prefetch = num();
		else if (a === '--confirm') o.confirm = true;
		else if (a === '--json') o.json = true;
		else throw new Error(`unknown option ${a}`);
	}
	if (o.size < 8)
		throw new Error('--size: at least 8 (the sequence number)');
	return o;
}

async function main(): Promise<void> {
	const o = parse(process.argv.slice(2));
	let broker: Broker | null = null;
	let port = Number(process.env.FERRY_PORT ?? 0);
	const host = process.env.FERRY_HOST ?? '127.0.0.1';
	if (!port) {
		broker = await startFerryd();
		port = broker.port;
	}
	const topic = `bench.ts.${process.pid}`;
	const prod = await connect({ host, port, name: 'bench-pub',
	    requestTimeout: 120000 });
	const cons = await connect({ host, port, name: 'bench-sub' });
	try {
		const seen = new Uint8Array(o.msgs);
		let received = 0, dups = 0, lastRx = 0n;
		let allIn!: () => void;
		const allReceived = new Promise<void>((r) => (allIn = r));
		let idle: NodeJS.Timeout | null = null;
		await cons.subscribe(topic, (m: Message) => {
			const i = Number(m.body.readBigUInt64BE(0));
			if (i < o.msgs && seen[i]++)
				dups++;
			received++;
			lastRx = process.hrtime.bigint();
			if (received >= o.msgs)
				allIn();
		}, { group: 'bench-g1', prefetch: o.prefetch });

		const body = Buffer.alloc(o.size, 0x61);
		const t0 = process.hrtime.bigint();
		if (o.confirm) {
			/* pipelined: at most --window unconfirmed */
			let next = 0;
			const worker = async () => {
				while (next < o.msgs) {
					const b = Buffer.from(body);
					b.writeBigUInt64BE(BigInt(next++), 0);
					await prod.publish(topic, b);
				}
			};
			await Promise.all(Array.from({ length: Math.min(o.window, o.msgs) },
			    worker));
		} else {
			for (let i = 0; i < o.msgs; i++) {
				const b = Buffer.from(body);
				b.writeBigUInt64BE(BigInt(i), 0);
				await prod.publish(topic, b, { confirm: false });
			}
			await prod.drain();
		}
		const t1 = process.hrtime.bigint();

		/* receivers give up after 5 s without a message */
		await new Promise<void>((resolve) => {
			let last = received;
			const check = () => {
				if (received >= o.msgs || received === last) {
					resolve();
					return;
				}
				last = received;
				idle = setTimeout(check, 5000);
			};
			allReceived.then(resolve);
			idle = setTimeout(check, 5000);
		});
		if (idle)
			clearTimeout(idle);
		let lost = 0;
		for (let i = 0; i < o.msgs; i++)
			if (!seen[i])
				lost++;
		const pubS = Number(t1 - t0) / 1e9;
		const subS = Number((lastRx || t1) - t0) / 1e9;
		const r = {
			msgs: o.msgs, size: o.size, confirm: o.confirm,
			window: o.confirm ? o.window : 0, prefetch: o.prefetch,
			pub_elapsed_s: +pubS.toFixed(6),
			pub_rate: Math.round(o.msgs / pubS),
			sub_elapsed_s: +subS.toFixed(6),
			sub_rate: Math.round(received / subS),
			received, lost, dups,
		};
		if (o.json) {
			console.log(JSON.stringify(r));
		} else {
			console.log(`bench: ${o.msgs} messages of ${o.size} bytes, ` +
			    `1 publisher (${o.confirm ? `confirmed, window ${o.window}` :
			    'fire-and-forget'}), 1 subscriber (acks, prefetch ${o.prefetch})`);
			console.log(`publish: ${r.pub_rate} msg/s (${r.msgs} in ` +
			    `${pubS.toFixed(3)} s)`);
			console.log(`receive: ${r.sub_rate} msg/s (${received} in ` +
			    `${subS.toFixed(3)} s)`);
			console.log(`lost: ${lost}, received twice: ${dups}`);
		}
		await cons.delete(topic);
		process.exitCode = lost || dups ? 1 : 0;
	} finally {
		await prod.close(2000);
		await cons.close(2000);
		await broker?.dispose();
	}
}

main().catch((e) => {
	console.error(`bench: ${(e as Error).message}`);
	process.exit(1);
});
