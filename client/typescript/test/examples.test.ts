/* Each examples/<pattern>/typescript program, run against a real ferryd. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startFerryd, PKG_ROOT, type Broker } from './ferryd.js';

let broker: Broker;

before(async () => {
	broker = await startFerryd(['--retry-backoff-base=0.05']);
});

after(async () => {
	await broker?.dispose();
});

function run(pattern: string): Promise<string> {
	const file = join(PKG_ROOT, 'dist', 'examples', pattern, 'typescript',
	    `${pattern}.mjs`);
	assert.ok(existsSync(file), `${file} not built`);
	return new Promise((resolve, reject) => {
		execFile(process.execPath, [file], {
			env: { ...process.env, FERRY_HOST: '127.0.0.1',
			    FERRY_PORT: String(broker.port) },
			timeout: 30000, killSignal: 'SIGKILL',
		}, (err, stdout, stderr) => {
			if (err)
				reject(new Error(`${pattern}: ${err.message}\n${stdout}${stderr}`));
			else
				resolve(stdout);
		});
	});
}

test('publish: fire-and-forget and confirmed', async () => {
	const out = await run('publish');
	assert.match(out, /^fire-and-forget: 1000 sent/m);
	assert.match(out, /^confirmed: 1000 stored in \d+ ms, first id [0-9a-f-]{36}$/m);
	assert.match(out, /own id greeting-1, republished: greeting-1/);
	assert.match(out, /^stored in example\.publish\.\d+: 2001$/m);
});

test('work-queue: three workers share thirty jobs', async () => {
	const out = await run('work-queue');
	const counts = [...out.matchAll(/^worker-\d processed (\d+) jobs$/gm)]
	    .map((m) => Number(m[1]));
	assert.equal(counts.length, 3);
	assert.equal(counts.reduce((a, b) => a + b, 0), 30);
	assert.ok(counts.every((n) => n > 0), out);
	assert.match(out, /^jobs done: 30, each once: true$/m);
});

test('fan-out: both groups get every event', async () => {
	const out = await run('fan-out');
	const all = 'order-1 order-2 order-3 order-4 order-5';
	assert.match(out, new RegExp(`^billing got 5: ${all}$`, 'm'));
	assert.match(out, new RegExp(`^shipping got 5: ${all}$`, 'm'));
});

test('request-reply: reply by correlation id, and a timeout', async () => {
	const out = await run('request-reply');
	assert.match(out, /failed at once \(NoSubscribers\)/);
	const req = out.match(/^responder: request (\S+) for A1$/m);
	const rep = out.match(/^requester: reply (\S+): \{"sku":"A1","price":200\}$/m);
	assert.ok(req && rep, out);
	assert.equal(req[1], rep[1]);
	assert.match(out, /no reply within 300 ms \(waited >=300 ms\)/);
});

test('retry-dlq: backoff, success, and a dead letter with history', async () => {
	const out = await run('retry-dlq');
	assert.match(out, /^flaky failed attempt 1, retry in 50 ms$/m);
	assert.match(out, /^flaky failed attempt 2, retry in 100 ms$/m);
	assert.match(out, /^flaky succeeded on attempt 3$/m);
	assert.match(out, /^dead letter: poison, reason nacked, after 3 attempts$/m);
	assert.equal([...out.matchAll(/^ {2}nacked by retry-worker: poison: attempt \d failed$/gm)].length, 3);
});

test('idempotent-consumer: duplicates skipped, each effect once', async () => {
	const out = await run('idempotent-consumer');
	assert.match(out, /^deliveries: 12, duplicates skipped: 3$/m);
	assert.match(out, /^orders applied: 9, balance: 90 \(expected 90\)$/m);
});
