/*
 * bench.ts - one producer connection publishes --msgs bodies of --size
 * bytes while one consumer connection (at-least-once, acks) receives
 * them; the same measure as `ferry bench` (client/bench.c): publish rate
 * = published / (last publish done - start), receive rate = received /
 * (last receive - start). Also counts lost and duplicated messages.
 *
 *   FERRY_PORT=4470 node dist/bench/bench.js [--msgs N] [--size B]
 *       [--confirm] [--window W] [--many K] [--prefetch P]
 *       [--no-idempotent] [--json]
 *
 * The producer awaits each publish() (--window of them in flight with
 * --confirm), or with --many K one publishMany() of K messages at a time
 * (W/K of them in flight with --confirm). --no-idempotent: confirmed
 * publishes without pid and seq, as `ferry bench --confirm` sends them
 * (the client's default, and PROTOCOL.md section 8's idempotent producer,
 * is with, as `ferry bench --confirm --producer`: the broker checks each
 * against the producer's high-water mark).  bench/clients-run at the top
 * of the tree runs both against libferry.
 *
 * Without FERRY_PORT it starts a ferryd of its own ($FERRYD, else
 * ../../build/broker/ferryd) on a free port and a temporary directory.
 *
 * The consumer runs in a worker thread, as each connection of ferry bench
 * has its own thread: one Node thread for both would measure their sum.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect, type Message } from '../src/index.js';
import { startFerryd, type Broker } from '../test/ferryd.js';

interface ConsumerJob {
	host: string;
	port: number;
	topic: string;
	msgs: number;
	prefetch: number;
}

interface ConsumerResult {
	received: number;
	dups: number;
	lost: number;
	lastRx: string;	/* process.hrtime.bigint(), one clock for all threads */
}

/* Worker thread: subscribe, say 'ready', receive until all or 5 s idle. */
async function consumer(job: ConsumerJob): Promise<void> {
	const cons = await connect({ host: job.host, port: job.port,
	    name: 'bench-sub' });
	const seen = new Uint8Array(job.msgs);
	let received = 0, dups = 0, lastRx = 0n;
	let allIn!: () => void;
	const all = new Promise<void>((r) => (allIn = r));
	await cons.subscribe(job.topic, (m: Message) => {
		const i = m.body.readUInt32BE(4);	/* --msgs < 2^32 */
		if (i < job.msgs && seen[i]++)
			dups++;
		received++;
		lastRx = process.hrtime.bigint();
		if (received >= job.msgs)
			allIn();
	}, { group: 'bench-g1', prefetch: job.prefetch });
	parentPort!.postMessage('ready');
	await new Promise<void>((resolve) => {
		let last = -1;
		const check = () => {
			if (received === last) {
				resolve();
				return;
			}
			last = received;
			t = setTimeout(check, 5000);
		};
		let t = setTimeout(check, 5000);
		all.then(() => {
			clearTimeout(t);
			resolve();
		});
	});
	let lost = 0;
	for (let i = 0; i < job.msgs; i++)
		if (!seen[i])
			lost++;
	await cons.close(2000);
	const r: ConsumerResult = { received, dups, lost,
	    lastRx: lastRx.toString() };
	parentPort!.postMessage(r);
}

interface Opts {
	msgs: number;
	size: number;
	confirm: boolean;
	window: number;
	many: number;
	prefetch: number;
	idempotent: boolean;
	json: boolean;
}

function parse(argv: string[]): Opts {
	const o: Opts = { msgs: 100000, size: 128, confirm: false, window: 1000,
	    many: 0, prefetch: 1000, idempotent: true, json: false };
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
		else if (a === '--many') o.many = num();
		else if (a === '--prefetch') o.prefetch = num();
		else if (a === '--confirm') o.confirm = true;
		else if (a === '--json') o.json = true;
		else if (a === '--no-idempotent') o.idempotent = false;
		else throw new Error(`unknown option ${a}`);
	}
	if (o.size < 8)
		throw new Error('--size: at least 8 (the sequence number)');
	if (o.msgs >= 2 ** 32)
		throw new Error('--msgs: below 2^32');
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
	    requestTimeout: 120000, idempotent: o.idempotent });
	const worker = new Worker(new URL(import.meta.url), { workerData: {
	    host, port, topic, msgs: o.msgs, prefetch: o.prefetch } });
	try {
		const result = new Promise<ConsumerResult>((resolve, reject) => {
			worker.on('message', (m) => {
				if (m !== 'ready')
					resolve(m as ConsumerResult);
			});
			worker.on('error', reject);
			worker.on('exit', (code) => reject(new Error(
			    `consumer exited (${code})`)));
		});
		result.catch(() => {});	/* awaited below */
		await new Promise<void>((resolve, reject) => {
			worker.once('message', () => resolve());
			worker.once('error', reject);
		});
		const body = Buffer.alloc(o.size, 0x61);
		let next = 0;
		const make = () => {
			const b = Buffer.allocUnsafe(o.size);
			body.copy(b);
			b.writeUInt32BE(next++, 4);
			return b;
		};
		/* K messages in one publishMany(), until none are left */
		const many = async (opts: { confirm: boolean }) => {
			while (next < o.msgs) {
				const k = Math.min(o.many, o.msgs - next);
				const a = new Array<Buffer>(k);
				for (let j = 0; j < k; j++)
					a[j] = make();
				await prod.publishMany(topic, a, opts);
			}
		};
		const t0 = process.hrtime.bigint();
		if (o.many) {
			const pumps = o.confirm ? Math.max(1, Math.floor(o.window / o.many)) : 1;
			await Promise.all(Array.from({ length: pumps },
			    () => many({ confirm: o.confirm })));
			if (!o.confirm)
				await prod.drain();
		} else if (o.confirm) {
			/* pipelined: at most --window unconfirmed */
			const pump = async () => {
				while (next < o.msgs)
					await prod.publish(topic, make());
			};
			await Promise.all(Array.from({ length: Math.min(o.window, o.msgs) },
			    pump));
		} else {
			while (next < o.msgs)
				await prod.publish(topic, make(), { confirm: false });
			await prod.drain();
		}
		const t1 = process.hrtime.bigint();

		const { received, dups, lost, lastRx: rx } = await result;
		const lastRx = BigInt(rx);
		const pubS = Number(t1 - t0) / 1e9;
		const subS = Number((lastRx || t1) - t0) / 1e9;
		const r = {
			msgs: o.msgs, size: o.size, confirm: o.confirm,
			window: o.confirm ? o.window : 0, many: o.many,
			idempotent: o.idempotent,
			prefetch: o.prefetch,
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
			    'fire-and-forget'}${o.many ? `, publishMany of ${o.many}` :
			    ''}), 1 subscriber (acks, prefetch ${o.prefetch})`);
			console.log(`publish: ${r.pub_rate} msg/s (${r.msgs} in ` +
			    `${pubS.toFixed(3)} s)`);
			console.log(`receive: ${r.sub_rate} msg/s (${received} in ` +
			    `${subS.toFixed(3)} s)`);
			console.log(`lost: ${lost}, received twice: ${dups}`);
		}
		await prod.delete(topic);
		process.exitCode = lost || dups ? 1 : 0;
	} finally {
		await worker.terminate();
		await prod.close(2000);
		await broker?.dispose();
	}
}

if (isMainThread) {
	main().catch((e) => {
		console.error(`bench: ${(e as Error).message}`);
		process.exit(1);
	});
} else {
	consumer(workerData as ConsumerJob).catch((e) => {
		console.error(`bench consumer: ${(e as Error).message}`);
		process.exit(1);
	});
}
