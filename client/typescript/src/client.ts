/*
 * client.ts - a ferry connection that survives the broker: requests
 * matched by rid (PROTOCOL.md section 5), deliveries routed by sid,
 * writes coalesced per event-loop turn, and on a lost connection a
 * reconnect with backoff and jitter that subscribes again and re-sends
 * the confirmed publishes whose outcome is unknown, with the same
 * producer id and sequence number so the broker never enqueues them twice
 * (section 8, Duplicates).
 */
import net from 'node:net';
import { EventEmitter, once } from 'node:events';
import { randomUUID, randomBytes } from 'node:crypto';
import {
	T, type Payload, type PubFields, FrameReader, FrameWriter, decodeFrame,
	readConfirm, confirm, readMsg, delivery,
	encodePayload, uint64, wireInt, canonical,
} from './codec.js';
import {
	FerryError, errorFromCode, ConnectionLost, ClientClosed, TimeoutError,
	AbortError, BrokerProtocolError, FrameTooBig, MessageTooBig,
	StaleLease, ModeError, BadArgument, SubscriptionDeleted, ShuttingDown,
	IdleTimeout,
} from './errors.js';
import { Message, type Settler, type ReplyOptions } from './message.js';
import {
	Subscription, type SubscribeOptions, type Handler, type SubOwner,
} from './subscription.js';

export interface ReconnectOptions {
	/** First delay in ms (default 100); doubles per failed attempt. */
	initialDelay?: number;
	/** Cap in ms (default 5000). */
	maxDelay?: number;
	/** Give up after this many failed attempts (default: never). */
	maxAttempts?: number;
}

export interface ConnectOptions {
	host?: string;
	port?: number;
	/** HELLO name: shown in the broker's logs and dead-letter history. */
	name?: string;
	/** ms for TCP connect + handshake (default 10000). */
	connectTimeout?: number;
	/** ms a request waits for its reply, reconnects included (30000). */
	requestTimeout?: number;
	/** Reconnect after a lost connection (default true). */
	reconnect?: boolean | ReconnectOptions;
	/** Idempotent producer id (default: a random UUID per client). */
	producerId?: string;
	/** Give confirmed publishes pid + seq (default true). */
	idempotent?: boolean;
	/** Largest frame accepted from the broker (default 64 MiB). */
	maxIncomingFrame?: number;
	/**
	 * When the broker announces an idle timeout (WELCOME `idle`), send a
	 * PING after a third of it without any other frame, so that an idle
	 * worker is not disconnected (default true).
	 */
	keepalive?: boolean;
}

export interface PublishOptions {
	/** Message id, 1..64 bytes; deduplicated within the broker's window. */
	id?: string;
	headers?: Record<string, string>;
	/** ms before the message may be delivered. */
	delay?: number;
	/** ms it may wait undelivered before it expires. */
	ttl?: number;
	/** Wait for the broker's confirm (default true). */
	confirm?: boolean;
	replyTo?: string;
	correlationId?: string;
	/** Targeted publish: only this existing group of the topic. */
	group?: string;
	/** Refuse with NoSubscribers if no group has a connected member. */
	mandatory?: boolean;
	/** ms to wait for the confirm (default: the client's requestTimeout). */
	timeout?: number;
}

export interface BatchItem {
	data: unknown;
	id?: string;
	headers?: Record<string, string>;
	delay?: number;
	ttl?: number;
	replyTo?: string;
	correlationId?: string;
}

export interface BatchOptions {
	confirm?: boolean;
	group?: string;
	mandatory?: boolean;
	timeout?: number;
}

export interface RequestOptions {
	/** ms to wait for the reply (default 5000); also the request's TTL. */
	timeout?: number;
	signal?: AbortSignal;
	headers?: Record<string, string>;
}

export interface Welcome {
	server: string;
	session: string;
	maxFrame: number;
	maxMsg: number;
	/** This broker lifetime's id: another one after a reconnect = restart. */
	boot: string;
	/** The broker's idle_timeout in ms (0: none). */
	idle: number;
	/** The user the broker took us for ('' without a users file). */
	user: string;
}

/* pub1: a single publish, answered with its id */
type Kind = 'pub' | 'pub1' | 'sub' | 'other';

/*
 * A request waiting for its reply, the frame kept for a resend, and for a
 * confirmed publish the promise's own resolve and reject (no closure of
 * ours per publish: kind 'pub1' resolves with the OK's first id). Reused
 * once answered (Client.release()): a thousand publishes in flight are a
 * thousand objects the scavenger would otherwise copy again and again.
 * A single publish keeps its parts, not a frame object (no object made
 * per publish): writeEntry() encodes them, and a resend after a reconnect
 * encodes them again. The options are copied, not referred to: a caller
 * may change its options object once publish() returned.
 */
class Pending implements PubFields {
	rid = 0;
	frame: Payload = NO_FRAME;
	/* a single PUB: the keys below, not frame */
	parts = false;
	topic = '';
	body: Uint8Array = NO_BODY;
	hdr: Record<string, string> | undefined = undefined;
	seq = 0;
	group = '';
	mandatory = false;
	id = '';
	delay: number | bigint = 0;
	ttl: number | bigint = 0;
	replyTo = '';
	correlationId = '';

	/* Keep a single PUB's parts. */
	keep(topic: string, body: Uint8Array,
	    hdr: Record<string, string> | undefined, o: PubFields,
	    seq: number): void {
		this.parts = true;
		this.topic = topic;
		this.body = body;
		this.hdr = hdr;
		this.seq = seq;
		this.group = o.group ?? '';
		this.mandatory = !!o.mandatory;
		this.id = o.id ?? '';
		this.delay = o.delay ?? 0;
		this.ttl = o.ttl ?? 0;
		this.replyTo = o.replyTo ?? '';
		this.correlationId = o.correlationId ?? '';
	}
	kind: Kind = 'other';
	/* May be sent again after a reconnect without harm. */
	resendable = false;
	/* Written on the current connection. */
	sent = false;
	retries = 0;
	/* the sweep (Client.ticks) that fails it; -1: none */
	deadline = 0;
	/* frame built without undefined keys or unsafe numbers */
	clean = false;
	/*
	 * the payload; for 'pub1' the id (a promise's resolve), called with
	 * index as well: a publishMany() entry's place in its array
	 */
	ok: (p: any, index: number) => void = noop;
	fail: (e: Error, index: number) => void = noop;
	index = 0;
}

const NO_FRAME: Payload = Object.freeze({});
const NO_BODY = new Uint8Array(0);

/*
 * The requests waiting for replies, by rid. rids are handed out in order
 * and mostly answered in order, so a ring indexed by rid finds them
 * without hashing or allocating (a Map's table churned as entries came
 * and went); a request still waiting when its slot comes round again
 * moves to a Map on the side.
 */
class PendingTable {
	private ring: Array<Pending | undefined> = new Array(4096).fill(undefined);
	private readonly mask = 4095;
	private far = new Map<number, Pending>();
	size = 0;

	get(rid: number): Pending | undefined {
		const r = this.ring[rid & this.mask];
		if (r !== undefined && r.rid === rid)
			return r;
		return this.far.size ? this.far.get(rid) : undefined;
	}

	set(r: Pending): void {
		const i = r.rid & this.mask;
		const old = this.ring[i];
		if (old !== undefined)
			this.far.set(old.rid, old);
		this.ring[i] = r;
		this.size++;
	}

	delete(rid: number): boolean {
		const i = rid & this.mask;
		const r = this.ring[i];
		if (r !== undefined && r.rid === rid)
			this.ring[i] = undefined;
		else if (!this.far.delete(rid))
			return false;
		this.size--;
		return true;
	}

	/** Every entry, oldest rid first (a copy: delete freely). */
	values(): Pending[] {
		const a: Pending[] = [...this.far.values()];
		for (const r of this.ring)
			if (r !== undefined)
				a.push(r);
		return a.sort((x, y) => x.rid - y.rid);
	}

	clear(): void {
		this.ring.fill(undefined);
		this.far.clear();
		this.size = 0;
	}
}

interface Conn {
	sock: net.Socket;
	onFrame: (buf: Buffer, start: number, end: number) => void;
	gen: number;
	reader: FrameReader;
	welcomed: boolean;
	handshake: { resolve: () => void; reject: (e: Error) => void } | null;
	/* Why it is closing, if we know better than the socket. */
	cause: Error | null;
	/* drained()'s promise while someone waits for the socket. */
	drain: Promise<void> | null;
}

/*
 * Resolves at c's socket's next 'drain' or 'close', for every waiter at
 * once. Racing events.once() for each would leave the loser's listeners
 * on the socket until it closed: one 'close' and one 'error' listener
 * more per congested publish, for as long as the connection lived.
 */
function drained(c: Conn): Promise<void> {
	if (c.drain)
		return c.drain;
	const s = c.sock;
	c.drain = new Promise<void>((resolve) => {
		const done = () => {
			s.off('drain', done);
			s.off('close', done);
			c.drain = null;
			resolve();
		};
		s.on('drain', done);
		s.on('close', done);
	});
	return c.drain;
}

type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

const FLUSH_BYTES = 256 * 1024;	/* write at once past this much queued */
/* Unwritten bytes past which a fire-and-forget publish waits for the socket
 * to drain: small, since each is latency once ferryd slows us (PROTOCOL.md
 * section 1).  Node has no TCP_NOTSENT_LOWAT, so this is the whole bound. */
const HIGH_WATER = 256 * 1024;
const OFFLINE_MAX = 10000;	/* fire-and-forget frames kept offline */
const SWEEP_MS = 50;	/* how often request deadlines are checked */

function encodeBody(data: unknown, headers?: Record<string, string>):
    { body: Buffer; hdr?: Record<string, string> } {
	if (Buffer.isBuffer(data))
		return { body: data, hdr: headers };
	if (data instanceof Uint8Array)
		return { body: Buffer.from(data.buffer, data.byteOffset,
		    data.byteLength), hdr: headers };
	const text = JSON.stringify(data);
	if (text === undefined)
		throw new BadArgument('data cannot be encoded as JSON');
	const hdr = { ...(headers ?? {}) };
	if (!Object.keys(hdr).some((k) => k.toLowerCase() === 'content-type'))
		hdr['content-type'] = 'application/json';
	return { body: Buffer.from(text), hdr };
}

function noop(): void {}

/* publish()'s default options: one object, not one per call */
const NO_OPTS: PublishOptions = Object.freeze({});

/* what an unconfirmed publish without an id resolves with, shared */
const QUEUED: Promise<undefined> = Promise.resolve(undefined);

/* A confirm's id: the first of OK `ids` ('' if the broker sent none). */
function firstId(p: Payload): string {
	const ids = p.ids;
	return Array.isArray(ids) && typeof ids[0] === 'string' ? ids[0] : '';
}

function isEmpty(o?: Record<string, string>): boolean {
	if (!o)
		return true;
	for (const _ in o)
		return false;
	return true;
}

function errorText(e: unknown): string {
	if (e instanceof Error)
		return e.message || e.name;
	return String(e);
}

export class Client extends EventEmitter implements Settler, SubOwner {
	readonly host: string;
	readonly port: number;
	readonly name: string;
	/** Producer id sent with confirmed publishes (idempotent producer). */
	readonly producerId: string;
	/** Reconnects done, and publishes sent again after one. */
	readonly counters = { reconnects: 0, resent: 0 };
	/** The last WELCOME. */
	welcome: Welcome = { server: '', session: '', maxFrame: 0, maxMsg: 0,
	    boot: '', idle: 0, user: '' };

	private state: State = 'connecting';
	private conn: Conn | null = null;
	private gen = 0;
	private nextRid = 1;
	private seq = 0;
	private ownPid: boolean;
	private pending = new PendingTable();
	private spare: Pending[] = [];	/* answered, for reuse */
	private subs = new Set<Subscription>();
	/* keyed by sid in canonical() form, as MSG frames decode */
	private bySid = new Map<number | bigint, Subscription>();
	private writer = new FrameWriter();
	private flushQueued = false;
	private ackBatch = new Map<number | bigint, Array<number | bigint>>();
	/* fire-and-forget publishes made while not connected */
	private offline: Pending[] = [];
	private sweeper: NodeJS.Timeout;
	private keepaliveTimer: NodeJS.Timeout | null = null;
	/* WELCOME boot of the connection before: another one = a restart */
	private boot = '';
	/* when the latest socket write happened (Date.now()) */
	private lastWrite = 0;
	/* sweeps done: the clock of request deadlines */
	private ticks = 0;
	private reconnectTimer: NodeJS.Timeout | null = null;
	private inbox: Subscription | null = null;
	/*
	 * The executor of every confirmed publish's promise: one function
	 * that leaves resolve and reject here, not a closure per publish.
	 */
	private nextOk: (v: any) => void = noop;
	private nextFail: (e: Error) => void = noop;
	private readonly capture = (ok: (v: any) => void,
	    fail: (e: Error) => void): void => {
		this.nextOk = ok;
		this.nextFail = fail;
	};
	private replyWaiters = new Map<string,
	    (e: Error | null, m?: Message) => void>();
	private opts: Required<Pick<ConnectOptions, 'connectTimeout' |
	    'requestTimeout' | 'idempotent' | 'maxIncomingFrame' |
	    'keepalive'>> & {
		reconnect: Required<ReconnectOptions> | null;
	};

	/** Use connect(); the constructor does not connect. */
	constructor(options: ConnectOptions = {}) {
		super();
		this.host = options.host ?? '127.0.0.1';
		this.port = options.port ?? 4470;
		this.name = options.name ?? '';
		/* 96 random bits: unique, and 16 bytes on every publish, not 36 */
		this.producerId = options.producerId ??
		    randomBytes(12).toString('base64url');
		this.ownPid = options.producerId === undefined;
		const rc = options.reconnect ?? true;
		this.opts = {
			connectTimeout: options.connectTimeout ?? 10000,
			requestTimeout: options.requestTimeout ?? 30000,
			idempotent: options.idempotent ?? true,
			maxIncomingFrame: options.maxIncomingFrame ?? 64 * 1024 * 1024,
			keepalive: options.keepalive ?? true,
			reconnect: rc === false ? null : {
				initialDelay: 100, maxDelay: 5000, maxAttempts: Infinity,
				...(rc === true ? {} : rc),
			},
		};
		this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
		this.sweeper.unref();
	}

	/** 'connecting', 'open', 'reconnecting' or 'closed'. */
	get status(): State {
		return this.state;
	}

	/** @internal */
	connectionGen(): number {
		return this.gen;
	}

	/** Connect and shake hands; rejects if the first attempt fails. */
	async start(): Promise<void> {
		try {
			await this.open();
		} catch (e) {
			this.state = 'closed';
			clearInterval(this.sweeper);
			throw e;
		}
		this.opened();
	}

	/*
	 * Errors nobody asked for (unsolicited ERRs, failed handler acks): to
	 * 'error' listeners; without one, a process warning, not the crash an
	 * unheard 'error' event would be.
	 */
	private emitError(e: Error): void {
		if (e instanceof ClientClosed)
			return;	/* the caller's own close(): nothing to report */
		if (this.listenerCount('error'))
			this.emit('error', e);
		else
			process.emitWarning(`ferry: ${e.name}: ${e.message}`);
	}


	/* ---- connection ---- */

	private open(): Promise<void> {
		return new Promise((resolve, reject) => {
			const sock = net.connect({ host: this.host, port: this.port });
			sock.setNoDelay(true);
			const c: Conn = {
				sock, gen: ++this.gen,
				reader: new FrameReader(this.opts.maxIncomingFrame),
				welcomed: false, handshake: null, cause: null, drain: null,
				onFrame: noop,
			};
			c.onFrame = (buf, start, end) => this.onFrame(c, buf, start, end);
			const timer = setTimeout(() => {
				c.cause = new TimeoutError(`no WELCOME from ${this.host}:` +
				    `${this.port} within ${this.opts.connectTimeout} ms`);
				sock.destroy();
			}, this.opts.connectTimeout);
			c.handshake = {
				resolve: () => { clearTimeout(timer); resolve(); },
				reject: (e) => { clearTimeout(timer); reject(e); },
			};
			this.conn = c;
			sock.on('connect', () => {
				sock.write(this.frameBytes({ t: T.HELLO, v: 1,
				    name: this.name || undefined }));
			});
			sock.on('data', (chunk: Buffer) => this.onData(c, chunk));
			sock.on('error', (e) => {
				if (!c.cause)
					c.cause = new ConnectionLost(
					    `connection to ${this.host}:${this.port}: ${e.message}`);
			});
			sock.on('close', () => this.onClose(c));
		});
	}

	private frameBytes(p: Payload): Buffer {
		const w = new FrameWriter();
		w.add(encodePayload(p));
		return w.take() as Buffer;
	}

	/* One frame of c's, chunk[start..end) (c.onFrame: made once per Conn). */
	private onFrame(c: Conn, buf: Buffer, start: number, end: number): void {
		if (c !== this.conn || c.cause)
			return;
		/* most frames are confirms or deliveries: the short way */
		if (c.welcomed) {
			if (this.confirmed(readConfirm(buf, start, end)))
				return;
			if (readMsg(buf, start, end)) {
				this.onMsg(c, delivery);
				return;
			}
		}
		this.onPayload(c, decodeFrame(buf, start, end));
	}

	private onData(c: Conn, chunk: Buffer): void {
		if (c !== this.conn)
			return;
		try {
			c.reader.push(chunk, c.onFrame);
		} catch (e) {
			this.protocolFailure(c, e as Error);
		}
	}

	/* The broker broke the protocol: nothing on this connection holds. */
	private protocolFailure(c: Conn, e: Error): void {
		if (!(e instanceof FerryError))
			e = new BrokerProtocolError(errorText(e));
		if (!c.cause)
			c.cause = e;
		c.sock.destroy();
	}

	private onPayload(c: Conn, p: Payload): void {
		const t = p.t;
		if (!c.welcomed) {
			if (t === T.WELCOME) {
				const u = (k: string) => {
					const v = p[k];
					return typeof v === 'number' ? v : 0;
				};
				if (p.v !== 1)
					throw new BrokerProtocolError(
					    `WELCOME for protocol version ${String(p.v)}`);
				const s = (k: string) => {
					const v = p[k];
					return typeof v === 'string' ? v : '';
				};
				this.welcome = {
					server: s('server'), session: s('session'),
					maxFrame: u('max_frame'), maxMsg: u('max_msg'),
					boot: s('boot'), idle: u('idle'), user: s('user'),
				};
				c.welcomed = true;
				const h = c.handshake;
				c.handshake = null;
				h?.resolve();
				return;
			}
			if (t === T.ERR) {
				c.cause = errorFromCode(Number(p.code),
				    typeof p.msg === 'string' ? p.msg : '');
				c.sock.destroy();
				return;
			}
			throw new BrokerProtocolError(
			    `expected WELCOME, got a frame of type ${String(t)}`);
		}
		switch (t) {
		case T.MSG: {
			const rid = p.rid;
			if (rid !== undefined && rid !== null && rid !== 0) {
				this.answer(Number(rid), p);	/* PEEK */
				return;
			}
			this.onMsg(c, p);
			return;
		}
		case T.OK:
			this.answer(Number(p.rid), p);
			return;
		case T.ERR: {
			const err = errorFromCode(Number(p.code),
			    typeof p.msg === 'string' ? p.msg : '');
			const sid = uint64(p.sid);
			if (sid)
				err.sid = sid;
			const rid = Number(p.rid ?? 0);
			if (rid) {
				this.answer(rid, p, err);
				return;
			}
			/*
			 * Unsolicited (section 5): every one goes to 'error', whatever
			 * its code, codes this client does not know included (a
			 * FerryError with that code); those below also change state.
			 */
			if (err instanceof SubscriptionDeleted && sid) {
				const sub = this.bySid.get(canonical(sid));
				if (sub) {
					this.bySid.delete(canonical(sid));
					this.subs.delete(sub);
					sub.fail(err);	/* its iterator throws err */
				}
			} else if (err instanceof ShuttingDown ||
			    err instanceof IdleTimeout) {
				/* the broker closes: reconnect, as after any loss */
				c.cause = new ConnectionLost(err.message);
			}
			this.emitError(err);
			return;
		}
		default:
			throw new BrokerProtocolError(
			    `frame of type ${String(t)} from the broker`);
		}
	}

	/* A delivery: to its subscription. */
	private onMsg(c: Conn, p: Payload): void {
		const m = new Message(p, c.gen, this);
		const sub = this.bySid.get(m.wireSid);
		if (sub)
			sub.deliver(m);
	}

	/* readConfirm() found the confirm of rid: a single publish's? */
	private confirmed(rid: number): boolean {
		const r = rid ? this.pending.get(rid) : undefined;
		if (r === undefined || r.kind !== 'pub1')
			return false;	/* the long way: decodeFrame, answer() */
		this.pending.delete(rid);
		const { ok, index } = r;
		this.release(r);
		ok(confirm.id, index);
		return true;
	}

	private answer(rid: number, p: Payload, err?: FerryError): void {
		const r = this.pending.get(rid);
		if (!r)
			return;	/* timed out already */
		if (err && (r.kind === 'pub' || r.kind === 'pub1') && r.resendable &&
		    (err.code === 13 || err.code === 14) && r.retries < 5) {
			/* Outcome unknown (section 7): same pid/seq, later. */
			r.retries++;
			r.sent = false;
			const t = setTimeout(() => {
				if (this.pending.get(rid) === r && !r.sent &&
				    this.state === 'open') {
					r.sent = true;
					this.writeEntry(r);
				}
			}, 50 * 2 ** r.retries);
			t.unref();
			return;
		}
		this.pending.delete(rid);
		const { ok, fail, kind, index } = r;
		this.release(r);
		if (err)
			fail(err, index);
		else if (kind === 'pub1')
			ok(firstId(p), index);
		else
			ok(p, index);
	}

	/* An answered request's entry: drop what it holds, keep it. */
	private release(r: Pending): void {
		r.frame = NO_FRAME;
		if (r.parts)
			r.keep('', NO_BODY, undefined, NO_OPTS, 0);
		r.parts = false;
		r.ok = noop;
		r.fail = noop;
		if (this.spare.length < 4096)
			this.spare.push(r);
	}

	private onClose(c: Conn): void {
		if (c !== this.conn)
			return;
		this.conn = null;
		let cause = c.cause;
		if (!cause && c.reader.pending)
			cause = new BrokerProtocolError('connection closed inside a ' +
			    `frame: ${c.reader.pending} of ${c.reader.expected} bytes`);
		if (!cause)
			cause = new ConnectionLost(
			    `connection to ${this.host}:${this.port} closed`);
		if (c.handshake) {
			const h = c.handshake;
			c.handshake = null;
			h.reject(cause);
			return;
		}
		this.lost(cause);
	}

	/* The open connection is gone: keep what can be redone, fail the rest. */
	private lost(cause: Error): void {
		this.stopKeepalive();
		const fatal = cause instanceof BrokerProtocolError ||
		    !this.opts.reconnect || this.state === 'closed';
		this.bySid.clear();
		this.ackBatch.clear();
		this.writer.clear();
		for (const s of this.subs)
			s.disconnected();
		for (const r of this.pending.values()) {
			const rid = r.rid;
			if (r.kind === 'sub') {
				/* subscribed again from this.subs */
				this.pending.delete(rid);
			} else if (!fatal && (!r.sent || (r.kind !== 'other' &&
			    r.resendable))) {
				r.sent = false;
			} else {
				this.pending.delete(rid);
				r.fail(cause instanceof FerryError ? cause :
				    new ConnectionLost(cause.message), r.index);
			}
		}
		if (this.state === 'closed')
			return;
		this.emit('disconnect', cause);
		if (!this.opts.reconnect) {
			this.shutdown(cause);
			return;
		}
		this.state = 'reconnecting';
		this.scheduleReconnect(0);
	}

	private scheduleReconnect(attempt: number): void {
		const rc = this.opts.reconnect!;
		const base = Math.min(rc.maxDelay, rc.initialDelay * 2 ** attempt);
		const delay = base / 2 + Math.random() * base / 2;	/* jitter */
		this.reconnectTimer = setTimeout(() => {
			this.reconnectTimer = null;
			if (this.state !== 'reconnecting')
				return;
			this.open().then(() => {
				if (this.state !== 'reconnecting') {
					this.conn?.sock.destroy();
					return;
				}
				this.counters.reconnects++;
				const before = this.boot;
				this.opened();
				this.emit('reconnect', attempt + 1);
				if (before && this.welcome.boot && this.welcome.boot !== before)
					this.emit('restart', this.welcome.boot, before);
			}, (e: Error) => {
				if (this.state !== 'reconnecting')
					return;
				this.emit('reconnectError', e);
				if (attempt + 1 >= rc.maxAttempts)
					this.shutdown(e);
				else
					this.scheduleReconnect(attempt + 1);
			});
		}, delay);
	}

	/* Handshake done: subscribe again, re-send, drain the offline queue. */
	private opened(): void {
		this.state = 'open';
		this.boot = this.welcome.boot;
		this.startKeepalive();
		if (this.welcome.maxFrame)
			this.conn!.reader.maxFrame = Math.max(this.opts.maxIncomingFrame,
			    this.welcome.maxFrame);
		for (const s of this.subs)
			this.sendSub(s);
		const todo = this.pending.values().filter((r) => !r.sent);
		for (const r of todo) {
			r.sent = true;
			if (r.kind !== 'sub' && r.kind !== 'other' && r.resendable &&
			    this.counters.reconnects)
				this.counters.resent++;
			this.writeEntry(r);
		}
		const off = this.offline;
		this.offline = [];
		for (const r of off)
			this.writeEntry(r);
	}

	/*
	 * WELCOME `idle`: PING (no rid: no reply) once a third of it went by
	 * without a write.  Looking every sixth, no gap between frames passes
	 * half of it while the timers are on time, and a loop held up for
	 * the other half still keeps the connection.  (Looking every third
	 * and pinging only after a silent look let gaps reach two thirds: a
	 * loaded machine's late timers then cost the connection.)
	 */
	private startKeepalive(): void {
		this.stopKeepalive();
		const idle = this.welcome.idle;
		if (!idle || !this.opts.keepalive)
			return;
		this.lastWrite = Date.now();
		this.keepaliveTimer = setInterval(() => {
			if (this.state !== 'open')
				return;
			if (Date.now() - this.lastWrite >= idle / 3 &&
			    !this.writer.size)
				this.write({ t: T.PING });
		}, Math.max(10, Math.floor(idle / 6)));
		this.keepaliveTimer.unref();
	}

	private stopKeepalive(): void {
		if (this.keepaliveTimer)
			clearInterval(this.keepaliveTimer);
		this.keepaliveTimer = null;
	}

	/* Fail everything and stop for good. */
	private shutdown(cause: Error): void {
		this.state = 'closed';
		this.stopKeepalive();
		clearInterval(this.sweeper);
		if (this.reconnectTimer)
			clearTimeout(this.reconnectTimer);
		const err = cause instanceof FerryError ? cause :
		    new ConnectionLost(cause.message);
		for (const r of this.pending.values())
			r.fail(err, r.index);
		this.pending.clear();
		for (const s of this.subs)
			s.fail(err);
		this.subs.clear();
		for (const w of [...this.replyWaiters.values()])
			w(err);
		this.offline = [];
		this.emit('close', cause);
	}

	/**
	 * Close: wait (up to `timeout` ms) for outstanding replies, write what
	 * is queued, close the socket. What is still pending then fails with
	 * ClientClosed.
	 */
	async close(timeout = 5000): Promise<void> {
		if (this.state === 'closed')
			return;
		const until = Date.now() + timeout;
		while (this.state === 'open' && this.pending.size &&
		    Date.now() < until)
			await new Promise((r) => setTimeout(r, 5));
		this.flush();
		const c = this.conn;
		this.shutdown(new ClientClosed());
		for (const s of [...this.bySid.values()])
			s.end();
		this.bySid.clear();
		if (c) {
			const closed = once(c.sock, 'close');
			c.sock.end();
			const t = setTimeout(() => c.sock.destroy(), 1000);
			await closed;
			clearTimeout(t);
		}
	}

	/* ---- writing ---- */

	/* Queue one frame on the open connection; written this loop turn. */
	private write(p: Payload, clean = false): void {
		const before = this.writer.size;
		this.queued(before, this.encode(p, clean));
	}

	/* Queue a single PUB from its parts (seq 0: without pid and seq). */
	private writePub(rid: number, topic: string, body: Uint8Array,
	    hdr: Record<string, string> | undefined, o: PubFields,
	    seq: number): void {
		const before = this.writer.size;
		this.queued(before, this.writer.pub(rid, topic, body, hdr, o,
		    this.producerId, seq));
	}

	/* A request (or an offline fire-and-forget) written again. */
	private writeEntry(r: Pending): void {
		if (r.parts)
			this.writePub(r.rid, r.topic, r.body, r.hdr, r, r.seq);
		else
			this.write(r.frame, r.clean);
	}

	/* A frame of len bytes was queued behind before: refuse or send. */
	private queued(before: number, len: number): void {
		if (this.welcome.maxFrame && len > this.welcome.maxFrame) {
			this.writer.truncate(before);
			throw new FrameTooBig(`frame of ${len} bytes, above ` +
			    `the broker's max_frame ${this.welcome.maxFrame}`);
		}
		if (this.writer.size >= FLUSH_BYTES)
			this.flush();
		else if (!this.flushQueued) {
			this.flushQueued = true;
			setImmediate(() => this.flush());
		}
	}

	/* The frames sent per message are encoded by hand (codec.ts). */
	private encode(p: Payload, clean: boolean): number {
		if (p.t === T.ACK && p.leases !== undefined)
			return this.writer.ack(p.rid as number, p.sid as number,
			    p.leases as number[]);
		return this.writer.pack(p, clean);
	}

	private flush(): void {
		this.flushQueued = false;
		const c = this.conn;
		if (!c || this.state !== 'open')
			return;
		if (this.ackBatch.size) {
			/*
			 * Without rid, as nothing waits for these: the broker
			 * settles them the same, sends no OK, and an ERR (a lease
			 * gone stale) comes unsolicited, to 'error', as a refused
			 * batch did before (section 5).
			 */
			for (const [sid, leases] of this.ackBatch)
				this.writer.ack(0, sid, leases);
			this.ackBatch.clear();
		}
		const buf = this.writer.take();
		if (buf) {
			this.lastWrite = Date.now();
			c.sock.write(buf, () => this.writer.recycle(buf));
		}
	}

	/*
	 * Register a request and send it if the connection is open (else it
	 * goes out on reconnect).
	 */
	private register(frame: Payload, kind: Kind, resendable: boolean,
	    timeout: number, ok: (p: any) => void, fail: (e: Error) => void,
	    clean = false): void {
		if (this.state === 'closed') {
			fail(new ClientClosed());
			return;
		}
		const r = this.entry(kind, resendable, timeout, ok, fail);
		frame.rid = r.rid;
		r.frame = frame;
		r.clean = clean;
		this.issue(r);
	}

	/* A pending entry with a new rid (not yet in the table). */
	private entry(kind: Kind, resendable: boolean, timeout: number,
	    ok: (p: any, index: number) => void,
	    fail: (e: Error, index: number) => void): Pending {
		const r = this.spare.pop() ?? new Pending();
		r.rid = this.nextRid++;
		r.kind = kind;
		r.resendable = resendable;
		r.sent = false;
		r.retries = 0;
		/*
		 * In sweeps, not ms: no clock read per request (Date.now() was a
		 * twentieth of a publish's time). Sweeps are SWEEP_MS apart or
		 * more, so this many never fail it before timeout ms.
		 */
		r.deadline = timeout > 0 ?
		    this.ticks + Math.ceil(timeout / SWEEP_MS) + 1 : -1;
		r.ok = ok;
		r.fail = fail;
		r.index = 0;
		return r;
	}

	/* Send a new entry if the connection is open (else on reconnect). */
	private issue(r: Pending): void {
		if (this.state === 'open') {
			try {
				this.writeEntry(r);
			} catch (e) {
				const { fail, index } = r;
				this.release(r);
				fail(e as Error, index);
				return;
			}
			r.sent = true;
		}
		this.pending.set(r);
	}

	private send(frame: Payload, kind: Kind = 'other', resendable = false,
	    timeout = this.opts.requestTimeout, clean = false): Promise<Payload> {
		return new Promise((resolve, reject) => this.register(frame, kind,
		    resendable, timeout, resolve, reject, clean));
	}

	private sweep(): void {
		const now = ++this.ticks;
		if (!this.pending.size)
			return;
		for (const r of this.pending.values()) {
			if (r.deadline >= 0 && r.deadline <= now) {
				this.pending.delete(r.rid);
				r.fail(new TimeoutError(`no reply to request ${r.rid} ` +
				    `(type ${r.parts ? T.PUB : String(r.frame.t)}) in time`),
				    r.index);
			}
		}
	}

	/* ---- publishing ---- */

	private nextSeq(): number {
		/*
		 * Above every seq this producer id used before. A random id of
		 * our own is new: count from 1 (small numbers pack short). A
		 * caller's id may have been used by an earlier process: go by
		 * the clock, 1000 per ms, so a restart still climbs.
		 */
		this.seq = this.ownPid ? this.seq + 1 :
		    Math.max(this.seq + 1, Date.now() * 1000);
		return this.seq;
	}

	private checkSize(body: Buffer): void {
		if (this.welcome.maxMsg && body.length > this.welcome.maxMsg)
			throw new MessageTooBig(`body of ${body.length} bytes, above ` +
			    `the broker's max_msg ${this.welcome.maxMsg}`);
	}

	/**
	 * Publish one message. Buffer/Uint8Array data is sent as is; anything
	 * else as JSON with `content-type: application/json`. Confirmed
	 * (default): resolves with the message id once stored. With
	 * `confirm: false`: resolves once queued for the socket, with the
	 * caller's id if it gave one.
	 */
	publish(topic: string, data: unknown, opts: PublishOptions = NO_OPTS):
	    Promise<string | undefined> {
		let body: Buffer, hdr: Record<string, string> | undefined;
		try {
			if (Buffer.isBuffer(data) && opts.headers === undefined) {
				body = data;	/* the usual case: bytes as they are */
			} else {
				({ body, hdr } = encodeBody(data, opts.headers));
				if (isEmpty(hdr))
					hdr = undefined;
			}
			this.checkSize(body);
			if (opts.confirm === false) {
				const w = this.oneWay(topic, body, hdr, opts);
				return w ? w.then(() => opts.id) : opts.id === undefined ?
				    QUEUED : Promise.resolve(opts.id);
			}
		} catch (e) {
			return Promise.reject(e);
		}
		if (this.state === 'closed')
			return Promise.reject(new ClientClosed());
		/*
		 * One promise per publish, made without a closure of ours
		 * (capture), resolved with the OK's id (confirmed(), answer());
		 * the frame is encoded from the parts the entry keeps.
		 */
		const p = new Promise<string | undefined>(this.capture);
		const r = this.entry('pub1', this.opts.idempotent || !!opts.id,
		    opts.timeout ?? this.opts.requestTimeout, this.nextOk,
		    this.nextFail);
		r.keep(topic, body, hdr, opts,
		    this.opts.idempotent ? this.nextSeq() : 0);
		this.issue(r);
		return p;
	}

	/**
	 * Publish each element of data to topic as publish() would, each in a
	 * PUB of its own (its own confirm, and with idempotence its own pid
	 * and seq), in order, with one promise for them all instead of one
	 * each: what a producer that waits for many at once needs, without a
	 * promise and an await per message. Confirmed (default): resolves
	 * with the ids in data's order once every confirm arrived; rejects
	 * with the first error, as Promise.all over publish() would (the
	 * others are still published). With `confirm: false`: resolves with
	 * [] once all are queued. opts apply to every message; `id` is refused (ids are per
	 * message: use publish()). A body that cannot be encoded or is too
	 * big rejects before any message is sent.
	 */
	publishMany(topic: string, data: readonly unknown[],
	    opts: PublishOptions = NO_OPTS): Promise<string[]> {
		const n = data.length;
		let bodies: Buffer[] | undefined;
		let hdrs: Array<Record<string, string> | undefined> | undefined;
		try {
			if (opts.id)
				throw new BadArgument('publishMany: an id is per message: ' +
				    'use publish()');
			if (opts.headers !== undefined || !data.every(Buffer.isBuffer)) {
				bodies = [];
				hdrs = [];
				for (const d of data) {
					const { body, hdr } = encodeBody(d, opts.headers);
					bodies.push(body);
					hdrs.push(isEmpty(hdr) ? undefined : hdr);
				}
			}
			for (let i = 0; i < n; i++)
				this.checkSize(bodies ? bodies[i] : data[i] as Buffer);
			if (opts.confirm === false) {
				let w: Promise<void> | undefined;
				for (let i = 0; i < n; i++)
					w = this.oneWay(topic, bodies ? bodies[i] : data[i] as Buffer,
					    hdrs?.[i], opts) ?? w;
				return w ? w.then(() => []) : Promise.resolve([]);
			}
			if (this.state === 'closed')
				throw new ClientClosed();
		} catch (e) {
			return Promise.reject(e);
		}
		return new Promise<string[]>((resolve, reject) => {
			const ids: string[] = new Array<string>(n).fill('');
			let left = n, failed = false;
			if (!n)
				resolve(ids);
			/* one pair of callbacks for all: index says whose confirm */
			const ok = (id: string, i: number) => {
				ids[i] = id;
				if (--left === 0 && !failed)
					resolve(ids);
			};
			const fail = (e: Error) => {
				if (!failed) {
					failed = true;
					reject(e);
				}
			};
			const timeout = opts.timeout ?? this.opts.requestTimeout;
			for (let i = 0; i < n && !failed; i++) {
				const r = this.entry('pub1', this.opts.idempotent, timeout, ok,
				    fail);
				r.index = i;
				r.keep(topic, bodies ? bodies[i] : data[i] as Buffer, hdrs?.[i],
				    opts, this.opts.idempotent ? this.nextSeq() : 0);
				this.issue(r);
			}
		});
	}

	/*
	 * The per-message keys of a PUB (or of one msgs entry), set only when
	 * they differ from their default, so the frame needs no clean-up
	 * before it is packed.
	 */
	private fillMsg(m: Payload, data: unknown, o: BatchItem | PublishOptions):
	    void {
		if (Buffer.isBuffer(data) && o.headers === undefined) {
			this.checkSize(data);	/* the usual case: bytes as they are */
			m.body = data;
		} else {
			const { body, hdr } = encodeBody(data, o.headers);
			this.checkSize(body);
			m.body = body;
			if (!isEmpty(hdr))
				m.hdr = hdr;
		}
		if (o.id)
			m.id = o.id;
		if (o.delay)
			m.delay = wireInt(o.delay);
		if (o.ttl)
			m.ttl = wireInt(o.ttl);
		if (o.replyTo)
			m.reply_to = o.replyTo;
		if (o.correlationId)
			m.corr = o.correlationId;
	}

	/** Publish many messages in one frame, enqueued in array order. */
	async publishBatch(topic: string, items: BatchItem[],
	    opts: BatchOptions = {}): Promise<string[]> {
		if (!items.length)
			throw new BadArgument('empty batch');
		const confirm = opts.confirm !== false;
		const msgs = items.map((it) => {
			const m: Payload = {};
			this.fillMsg(m, it.data, it);
			if (confirm && this.opts.idempotent) {
				m.pid = this.producerId;
				m.seq = wireInt(this.nextSeq());
			}
			return m;
		});
		const f: Payload = { t: T.PUB, topic, msgs };
		if (opts.group)
			f.group = opts.group;
		if (opts.mandatory)
			f.mandatory = true;
		if (!confirm) {
			await this.oneWay(topic, f, undefined, NO_OPTS);
			return items.map((it) => it.id ?? '');
		}
		const ok = await this.send(f, 'pub',
		    this.opts.idempotent || items.every((it) => it.id),
		    opts.timeout ?? this.opts.requestTimeout, true);
		return Array.isArray(ok.ids) ? (ok.ids as string[]) : [];
	}

	/*
	 * Fire-and-forget: no rid. Returns a promise only when the caller
	 * should wait: the socket is congested. A single PUB is written from
	 * its parts; a batch (publishBatch) is its frame, given as body.
	 */
	private oneWay(topic: string, body: Buffer | Payload,
	    hdr: Record<string, string> | undefined, o: PubFields):
	    Promise<void> | undefined {
		if (this.state === 'closed')
			throw new ClientClosed();
		const single = Buffer.isBuffer(body);
		if (this.state !== 'open') {
			if (this.offline.length >= OFFLINE_MAX)
				throw new ConnectionLost('not connected, and ' +
				    `${OFFLINE_MAX} fire-and-forget frames already wait`);
			const r = new Pending();
			if (single) {
				r.keep(topic, body, hdr, o, 0);
			} else {
				r.frame = body;
				r.clean = true;
			}
			this.offline.push(r);
			return undefined;
		}
		if (single)
			this.writePub(0, topic, body, hdr, o, 0);
		else
			this.write(body, true);
		const c = this.conn!;
		return c.sock.writableLength > HIGH_WATER ? drained(c) : undefined;
	}

	/* ---- subscribing ---- */

	private sendSub(s: Subscription): void {
		const o = s.options;
		const f: Payload = {
			t: T.SUB, topic: s.topic, group: o.group || undefined,
			prefetch: o.prefetch || undefined,
			mode: o.mode === 'at-most-once' ? 1 : undefined,
			ack_timeout: o.ackTimeout || undefined,
			max_attempts: o.maxAttempts || undefined,
			ephemeral: o.ephemeral || undefined,
			ttl: o.ttl || undefined, ttl_drop: o.ttlDrop || undefined,
			max_msgs: o.maxMsgs || undefined,
			max_bytes: o.maxBytes || undefined,
			overflow: o.overflow === 'dead-letter' ? 1 : undefined,
		};
		/* ok runs as the OK is read, before the MSGs behind it. */
		this.register(f, 'sub', false, this.opts.requestTimeout, (p) => {
			const sid = uint64(p.sid);
			if (!sid) {
				s.fail(new BrokerProtocolError('SUB OK without a sid'));
				this.subs.delete(s);
				return;
			}
			if (!this.subs.has(s)) {
				/* unsubscribed meanwhile */
				this.send({ t: T.UNSUB, sid: wireInt(sid) })
				    .catch(() => {});
				return;
			}
			this.bySid.set(canonical(sid), s);
			s.subscribed(sid, typeof p.group === 'string' ? p.group : '');
		}, (e) => {
			if (e instanceof ConnectionLost || e instanceof TimeoutError &&
			    this.state !== 'open')
				return;	/* subscribed again on reconnect */
			this.subs.delete(s);
			s.fail(e);
		});
	}

	private addSub(topic: string, opts: SubscribeOptions,
	    handler?: Handler): Subscription {
		if (this.state === 'closed')
			throw new ClientClosed();
		const s = new Subscription(this, topic, opts, handler);
		this.subs.add(s);
		if (this.state === 'open')
			this.sendSub(s);
		return s;
	}

	/**
	 * Run handler for every delivery. At-least-once: a handler that
	 * resolves acks the message, one that throws nacks it with the error
	 * text (unless it settled the message itself); a handler running past
	 * half its lease is touched.
	 */
	async subscribe(topic: string, handler: Handler,
	    opts: SubscribeOptions = {}): Promise<Subscription> {
		const s = this.addSub(topic, opts, handler);
		await s.ready;
		return s;
	}

	/** Deliveries as an async iterator; leaving the loop unsubscribes. */
	messages(topic: string, opts: SubscribeOptions = {}): Subscription {
		return this.addSub(topic, opts);
	}

	/** @internal */
	async unsubscribe(s: Subscription): Promise<void> {
		if (!this.subs.delete(s)) {
			s.end();
			return;
		}
		const sid = s.sid;
		s.end();
		if (sid && this.state === 'open') {
			this.bySid.delete(canonical(sid));
			await this.send({ t: T.UNSUB, sid: wireInt(sid) });
		}
	}

	/** @internal */
	settleFromHandler(s: Subscription, m: Message, err: unknown): void {
		if (m.settled || s.mode !== 'at-least-once' || m.gen !== this.gen ||
		    this.state !== 'open')
			return;
		m.settled = true;
		if (err) {
			this.register({ t: T.NACK, sid: m.wireSid,
			    lease: m.wireLease, error: errorText(err) }, 'other',
			    false, this.opts.requestTimeout, () => {},
			    (e) => this.emitError(e));
			return;
		}
		/* Batched: one ACK frame per subscription per loop turn. */
		const b = this.ackBatch.get(m.wireSid);
		if (b)
			b.push(m.wireLease);
		else
			this.ackBatch.set(m.wireSid, [m.wireLease]);
		if (!this.flushQueued) {
			this.flushQueued = true;
			setImmediate(() => this.flush());
		}
	}

	/** @internal */
	touchFromHandler(m: Message): void {
		if (m.settled || m.gen !== this.gen)
			return;
		this.touch(m).catch((e) => this.emitError(e));
	}

	/* ---- settling (Settler) ---- */

	private leaseFrame(m: Message, t: number): Payload {
		if (!m.wireLease)
			throw new ModeError('this delivery has no lease ' +
			    '(at-most-once, or a PEEK)');
		if (m.gen !== this.gen || this.state !== 'open')
			throw new StaleLease('the connection that delivered this ' +
			    'message is gone; the broker will deliver it again');
		return { t, sid: m.wireSid, lease: m.wireLease };
	}

	/** @internal */
	async ack(m: Message): Promise<void> {
		const f = this.leaseFrame(m, T.ACK);
		m.settled = true;
		await this.send(f);
	}

	/** @internal */
	async nack(m: Message, delay?: number, error?: string): Promise<void> {
		const f = this.leaseFrame(m, T.NACK);
		if (delay !== undefined)
			f.delay = delay;
		if (error)
			f.error = error;
		m.settled = true;
		await this.send(f);
	}

	/** @internal */
	async touch(m: Message): Promise<void> {
		await this.send(this.leaseFrame(m, T.TOUCH));
	}

	/** @internal */
	async reply(m: Message, data: unknown, opts: ReplyOptions = {}):
	    Promise<string> {
		if (!m.replyTo)
			throw new BadArgument('message has no reply_to');
		return (await this.publish(m.replyTo, data, {
			headers: opts.headers, correlationId: m.correlationId,
			mandatory: true,
		})) ?? '';
	}

	/* ---- request-reply ---- */

	private async ensureInbox(): Promise<Subscription> {
		if (!this.inbox || this.inbox.closed) {
			this.inbox = this.addSub(`_inbox.${randomUUID()}`,
			    { ephemeral: true, mode: 'at-most-once' }, (m) => {
				this.replyWaiters.get(m.correlationId)?.(null, m);
			});
		}
		await this.inbox.ready;
		return this.inbox;
	}

	/**
	 * Publish a request and wait for its reply: mandatory (NoSubscribers
	 * at once if no responder is connected), TTL = timeout, reply matched
	 * by correlation id on this client's inbox.
	 */
	async request(topic: string, data: unknown,
	    opts: RequestOptions = {}): Promise<Message> {
		const timeout = opts.timeout ?? 5000;
		const signal = opts.signal;
		if (signal?.aborted)
			throw new AbortError(errorText(signal.reason ?? 'aborted'));
		const inbox = await this.ensureInbox();
		const corr = randomUUID();
		return new Promise<Message>((resolve, reject) => {
			let done = false;
			const finish = (e: Error | null, m?: Message) => {
				if (done)
					return;
				done = true;
				clearTimeout(timer);
				this.replyWaiters.delete(corr);
				signal?.removeEventListener('abort', onAbort);
				if (e)
					reject(e);
				else
					resolve(m!);
			};
			const timer = setTimeout(() => finish(new TimeoutError(
			    `no reply from ${topic} within ${timeout} ms`)), timeout);
			const onAbort = () => finish(new AbortError(
			    errorText(signal?.reason ?? 'aborted')));
			signal?.addEventListener('abort', onAbort, { once: true });
			this.replyWaiters.set(corr, finish);
			this.publish(topic, data, {
				headers: opts.headers, replyTo: inbox.topic,
				correlationId: corr, mandatory: true, ttl: timeout,
				timeout,
			}).catch((e: Error) => finish(e));
		});
	}

	/* ---- everything else ---- */

	/** Round trip to the broker, in ms. */
	async ping(): Promise<number> {
		const t0 = performance.now();
		await this.send({ t: T.PING });
		return performance.now() - t0;
	}

	/** Delete a topic with all its groups, or one group of it. */
	async delete(topic: string, group?: string): Promise<void> {
		await this.send({ t: T.DELETE, topic, group: group || undefined });
	}

	/** STATS rows: one per group and one per topic (group ''). */
	async stats(topic?: string): Promise<Array<Record<string, unknown>>> {
		const ok = await this.send({ t: T.STATS,
		    topic: topic || undefined });
		return Array.isArray(ok.stats) ? ok.stats : [];
	}

	/**
	 * The broker-wide figures (STATS without a topic: conns, topics,
	 * groups, ready, ..., up); {} from a broker that does not report them.
	 */
	async statsBroker(): Promise<Record<string, unknown>> {
		const ok = await this.send({ t: T.STATS });
		const rows = ok.broker;
		return Array.isArray(rows) && rows.length &&
		    typeof rows[0] === 'object' && rows[0] !== null ?
		    { ...(rows[0] as Record<string, unknown>) } : {};
	}

	/** A group's outstanding deliveries. */
	async inflight(topic: string, group?: string):
	    Promise<Array<Record<string, unknown>>> {
		const ok = await this.send({ t: T.INFLIGHT, topic,
		    group: group || undefined });
		return Array.isArray(ok.inflight) ? ok.inflight : [];
	}

	/** The group's next message, left where it is (no lease). */
	async peek(topic: string, group?: string): Promise<Message> {
		const p = await this.send({ t: T.PEEK, topic,
		    group: group || undefined });
		return new Message(p, -1, this);
	}

	/** What the broker remembers of a message, oldest event first. */
	async trace(id: string): Promise<Array<Record<string, unknown>>> {
		const ok = await this.send({ t: T.TRACE, id });
		return Array.isArray(ok.events) ? ok.events : [];
	}

	/** Resolves once every queued frame has been handed to the kernel. */
	async drain(): Promise<void> {
		this.flush();
		const c = this.conn;
		if (c && c.sock.writableLength > 0 && this.state === 'open')
			await drained(c);
	}

	/** Requests waiting for their reply (publishes being retried too). */
	get outstanding(): number {
		return this.pending.size;
	}
}

/** Connect to a broker: resolves once the handshake is done. */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
	const c = new Client(options);
	await c.start();
	return c;
}
