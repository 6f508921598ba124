/*
 * A work queue: three workers join one group and share its jobs; each
 * job goes to one worker at a time. A handler that resolves acks its job.
 */
import { connect, type Client } from 'ferry-client';

const opts = {
	host: process.env.FERRY_HOST ?? '127.0.0.1',
	port: Number(process.env.FERRY_PORT ?? 4470),
};
const topic = `example.jobs.${process.pid}`;
const JOBS = 30;
const done = new Map<string, number>();	/* job -> times processed */
const perWorker: Record<string, number> = {};
let finished!: () => void;
const allDone = new Promise<void>((r) => (finished = r));

const workers: Client[] = [];
for (const name of ['worker-1', 'worker-2', 'worker-3']) {
	const w = await connect({ ...opts, name });
	workers.push(w);
	perWorker[name] = 0;
	await w.subscribe(topic, async (msg) => {
		const job = msg.json<{ job: number }>().job;
		await new Promise((r) => setTimeout(r, 5 + (job % 3) * 5));	/* work */
		perWorker[name]++;
		done.set(`job-${job}`, (done.get(`job-${job}`) ?? 0) + 1);
		if (done.size === JOBS)
			finished();
	}, { group: 'workers', prefetch: 2 });
}

const producer = await connect({ ...opts, name: 'producer' });
await producer.publishBatch(topic, Array.from({ length: JOBS },
    (_, job) => ({ data: { job } })));

const timer = setTimeout(() => {
	console.error('timed out');
	process.exit(1);
}, 20000);
await allDone;
clearTimeout(timer);
for (const [name, n] of Object.entries(perWorker))
	console.log(`${name} processed ${n} jobs`);
console.log(`jobs done: ${done.size}, each once: ${[...done.values()].every((n) => n === 1)}`);
await producer.delete(topic);
await producer.close();
for (const w of workers)
	await w.close();
