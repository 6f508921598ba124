/*
 * Retry with exponential backoff, then a dead-letter queue. A flaky job
 * fails twice and succeeds on its third attempt; a poison job fails every
 * time and, after maxAttempts, lands in <topic>.dlq with its history.
 * The handler nacks with delay = base * 2^(attempt-1); without a delay
 * the broker applies its own backoff.
 */
import { connect } from 'ferry-client';

const opts = {
	host: process.env.FERRY_HOST ?? '127.0.0.1',
	port: Number(process.env.FERRY_PORT ?? 4470),
};
const topic = `example.tasks.${process.pid}`;
const BASE_MS = 50;

const client = await connect({ ...opts, name: 'retry-worker' });
let flakyDone!: () => void;
const flaky = new Promise<void>((r) => (flakyDone = r));

const sub = client.messages(topic, { group: 'tasks', maxAttempts: 3 });
await sub.ready;
void (async () => {
	for await (const msg of sub) {
		const task = msg.text();
		const fails = task === 'poison' || msg.attempt < 3;
		if (!fails) {
			console.log(`${task} succeeded on attempt ${msg.attempt}`);
			await msg.ack();
			flakyDone();
			continue;
		}
		const delay = BASE_MS * 2 ** (msg.attempt - 1);
		console.log(`${task} failed attempt ${msg.attempt}, retry in ${delay} ms`);
		await msg.nack({ delay, error: `${task}: attempt ${msg.attempt} failed` });
	}
})();

await client.publish(topic, Buffer.from('flaky'));
await client.publish(topic, Buffer.from('poison'));

const dlq = client.messages(`${topic}.dlq`)[Symbol.asyncIterator]();
const timer = setTimeout(() => {
	console.error('timed out');
	process.exit(1);
}, 15000);
const dead = (await dlq.next()).value!;
console.log(`dead letter: ${dead.text()}, reason ${dead.headers['dlq-reason']}, ` +
    `after ${dead.headers['dlq-attempts']} attempts`);
for (const h of dead.history)
	console.log(`  ${h.cause} by ${h.by}: ${h.error}`);
await dead.ack();
await flaky;
clearTimeout(timer);
await sub.unsubscribe();
await client.delete(topic);
await client.delete(`${topic}.dlq`);
await client.close();
