/*
 * cpu.ts - the client's CPU time per message, one connection at a time,
 * which a loaded machine changes far less than it changes rates.
 *
 *   FERRY_PORT=P node dist/bench/cpu.js publish [--msgs N] [--window W]
 *       [--many K]
 *   FERRY_PORT=P node dist/bench/cpu.js consume [--msgs N] [--prefetch P]
 *
 * publish: confirmed publishes of 128-byte bodies, W in flight (default
 * 1000), to a topic without groups; with --many, W/K publishMany() calls
 * of K messages in flight. consume: N messages are published
 * into a group first (not measured), then a handler subscription takes
 * and acks them all. Prints one JSON line: rate, and us of CPU (user +
 * system, this process) per message while measuring.
 */
import { connect } from '../src/index.js';

function arg(name: string, def: number): number {
	const i = process.argv.indexOf(name);
	const v = i > 0 ? Number(process.argv[i + 1]) : def;
	if (!Number.isInteger(v) || v <= 0)
		throw new Error(`${name}: a positive integer is needed`);
	return v;
}

async function main(): Promise<void> {
	const mode = process.argv[2];
	const n = arg('--msgs', 200000);
	const c = await connect({ port: Number(process.env.FERRY_PORT ?? 4470),
	    host: process.env.FERRY_HOST ?? '127.0.0.1', requestTimeout: 120000 });
	const topic = `cpu.${mode}.${process.pid}`;
	const body = Buffer.alloc(128, 0x61);
	let cpu: NodeJS.CpuUsage, t0: bigint;
	if (mode === 'publish') {
		const w = arg('--window', 1000);
		const k = process.argv.includes('--many') ? arg('--many', 0) : 0;
		let next = 0;
		const pump = k ? async () => {
			while (next < n) {
				const m = Math.min(k, n - next);
				next += m;
				await c.publishMany(topic, new Array<Buffer>(m).fill(body));
			}
		} : async () => {
			while (next++ < n)
				await c.publish(topic, body);
		};
		cpu = process.cpuUsage();
		t0 = process.hrtime.bigint();
		await Promise.all(Array.from({ length: k ? Math.max(1,
		    Math.floor(w / k)) : Math.min(w, n) }, pump));
	} else if (mode === 'consume') {
		const prefetch = arg('--prefetch', 1000);
		await (await c.subscribe(topic, () => {}, { group: 'g' }))
		    .unsubscribe();	/* the group, to hold what follows */
		for (let i = 0; i < n; i += 1000)
			await c.publishBatch(topic, Array.from(
			    { length: Math.min(1000, n - i) }, () => ({ data: body })));
		let got = 0;
		let done!: () => void;
		const all = new Promise<void>((r) => (done = r));
		cpu = process.cpuUsage();
		t0 = process.hrtime.bigint();
		await c.subscribe(topic, () => {
			if (++got === n)
				done();
		}, { group: 'g', prefetch });
		await all;
	} else {
		throw new Error('usage: cpu.js publish|consume [--msgs N] ' +
		    '[--window W] [--prefetch P]');
	}
	const used = process.cpuUsage(cpu);
	const s = Number(process.hrtime.bigint() - t0) / 1e9;
	console.log(JSON.stringify({ mode, msgs: n, rate: Math.round(n / s),
	    us_cpu_per_msg: +((used.user + used.system) / n).toFixed(2) }));
	c.on('error', () => {});
	await c.delete(topic);
	await c.close(2000);
}

main().catch((e) => {
	console.error(`cpu: ${(e as Error).message}`);
	process.exit(1);
});
