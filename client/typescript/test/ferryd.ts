/*
 * ferryd.ts - run the real broker for a test: 127.0.0.1, port 0 (it
 * writes the bound port to --port-file), a temporary data directory,
 * stopped by its PID. Bounded waits everywhere.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, existsSync }
    from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/* dist/test/ferryd.js -> the package root */
export const PKG_ROOT = resolve(dirname(fileURLToPath(import.meta.url)),
    '..', '..');
export const FERRYD = process.env.FERRYD ||
    resolve(PKG_ROOT, '../../build/broker/ferryd');

export function sleep(ms: number): Promise<void> {
	return new Promise((r) => setTimeout(r, ms));
}

export interface Broker {
	port: number;
	dir: string;
	pid: number;
	log: string;
	/** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. */
	stop(): Promise<number | null>;
	/** SIGKILL (a crash). */
	kill9(): Promise<void>;
	/** Start again on the same data directory and port. */
	restart(): Promise<void>;
	/** stop() and remove the directory. */
	dispose(): Promise<void>;
}

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
	if (p.exitCode !== null || p.signalCode !== null)
		return Promise.resolve(true);
	return new Promise((res) => {
		const t = setTimeout(() => res(false), ms);
		p.once('exit', () => {
			clearTimeout(t);
			res(true);
		});
	});
}

export async function startFerryd(args: string[] = []): Promise<Broker> {
	if (!existsSync(FERRYD))
		throw new Error(`ferryd not found at ${FERRYD} (set FERRYD)`);
	const dir = mkdtempSync(join(process.env.TMPDIR || tmpdir(),
	    'ferry-ts-'));
	const log = join(dir, 'ferryd.log');
	const portFile = join(dir, 'port');
	let proc: ChildProcess | null = null;
	let port = 0;

	const launch = async () => {
		rmSync(portFile, { force: true });
		const fd = openSync(log, 'a');
		proc = spawn(FERRYD, ['--listen', '127.0.0.1', '--port', String(port),
		    '--port-file', portFile, '--data-dir', join(dir, 'data'),
		    ...args], { stdio: ['ignore', 'ignore', fd] });
		closeSync(fd);
		const deadline = Date.now() + 10000;
		for (;;) {
			if (proc.exitCode !== null)
				throw new Error(`ferryd exited at start-up (see ${log})`);
			try {
				const p = parseInt(readFileSync(portFile, 'utf8'), 10);
				if (p > 0) {
					port = p;
					return;
				}
			} catch {
				/* not written yet */
			}
			if (Date.now() > deadline) {
				proc.kill('SIGKILL');
				throw new Error('ferryd did not report its port within 10 s');
			}
			await sleep(10);
		}
	};
	await launch();

	const b: Broker = {
		get port() { return port; },
		dir, log,
		get pid() { return proc?.pid ?? 0; },
		async stop() {
			const p = proc;
			if (!p || p.exitCode !== null || p.signalCode !== null)
				return p?.exitCode ?? null;
			process.kill(p.pid!, 'SIGTERM');
			if (!(await waitExit(p, 5000))) {
				process.kill(p.pid!, 'SIGKILL');
				await waitExit(p, 5000);
			}
			return p.exitCode;
		},
		async kill9() {
			const p = proc;
			if (!p || p.exitCode !== null || p.signalCode !== null)
				return;
			process.kill(p.pid!, 'SIGKILL');
			await waitExit(p, 5000);
		},
		async restart() {
			await launch();
		},
		async dispose() {
			await b.stop();
			rmSync(dir, { recursive: true, force: true });
		},
	} as Broker;
	return b;
}
