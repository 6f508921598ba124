/*
 * codec-compare.mjs - the two msgpack libraries on ferry's frames: encode
 * a PUB (128-byte body, pid + seq) and decode a MSG (128-byte body, a
 * lease above 2^32), each with the options the client needs (plain maps,
 * 64-bit integers exact). Not part of the client; to run it:
 *   npm i --no-save @msgpack/msgpack && node bench/codec-compare.mjs
 */
import { Packr, Unpackr } from 'msgpackr';
import { Encoder, Decoder } from '@msgpack/msgpack';

const packr = new Packr({ useRecords: false, variableMapSize: true,
    int64AsType: 'auto' });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true,
    int64AsType: 'auto' });
const enc = new Encoder({ useBigInt64: true });
const dec = new Decoder({ useBigInt64: true });
const body = Buffer.alloc(128, 7);
const pub = (i) => ({ t: 2, rid: i, topic: 'bench.topic', body,
    pid: '3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40',
    seq: BigInt(1700000000123000 + i) });
const msg = packr.pack({ t: 67, sid: 1,
    id: '3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40', topic: 'bench.topic',
    lease: (7n << 32n) | 123n, att: 1, ts: 1700000000123, body });
if (Buffer.compare(Buffer.from(enc.encode(pub(1))), packr.pack(pub(1))))
	console.log('note: the two encodings differ in bytes');

const N = Number(process.argv[2] || 300000);
function run(name, f) {
	for (let i = 0; i < N / 10; i++)
		f(i);
	const t0 = process.hrtime.bigint();
	for (let i = 0; i < N; i++)
		f(i);
	const ns = Number(process.hrtime.bigint() - t0) / N;
	console.log(`${name.padEnd(28)} ${ns.toFixed(0).padStart(6)} ns/frame` +
	    `  ${(1e3 / ns).toFixed(2)} M frames/s`);
}
for (let round = 1; round <= 3; round++) {
	console.log(`round ${round}`);
	run('msgpackr encode PUB', (i) => packr.pack(pub(i)));
	run('@msgpack/msgpack encode PUB', (i) => enc.encode(pub(i)));
	run('msgpackr decode MSG', () => unpackr.unpack(msg));
	run('@msgpack/msgpack decode MSG', () => dec.decode(msg));
}
