// The SFrame encoded-frame transform (RTCRtpScriptTransform worker). One worker serves
// every sender and receiver of a page, so audio and video of this sender share one frame
// counter per KID (a (key, nonce) pair is never reused).
//
// From the page: {type: 'epoch', epochId, secret, leaf, send} installs an epoch secret
// (MLS exporter secret at step 0 or a ratcheted step) and, with `send`, makes it the one
// this sender encrypts under as MLS leaf `leaf`; {type: 'forget', epochId} erases one.
// To the page, every 250 ms: {type: 'stats', ...} counts, the epochs in use.
import * as sf from './sframe.js';

const secrets = new Map();   // epochId -> Uint8Array(32)
const keys = new Map();      // KID (BigInt) -> Promise<frame key>
let send = null;             // {kid, fk: Promise<frame key>, ctr: BigInt}
const stats = {encrypted: 0, decrypted: 0, failed: 0, noKey: 0, dropped: 0, sendEpoch: null, lastRecvEpoch: null};

function keyFor(kid) {
  let k = keys.get(kid);
  if (!k) {
    const [epochId, leaf] = sf.splitKid(kid);
    const secret = secrets.get(epochId);
    if (!secret) return null;
    k = sf.baseKey(secret, epochId, leaf).then(b => sf.frameKey(b, kid));
    keys.set(kid, k);
  }
  return k;
}

self.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'epoch') {
    secrets.set(m.epochId, new Uint8Array(m.secret));
    if (m.send) {
      const kid = sf.kid(m.epochId, m.leaf);
      send = {kid, fk: keyFor(kid), ctr: 0n};
      stats.sendEpoch = m.epochId;
    }
  } else if (m.type === 'forget') {
    secrets.get(m.epochId)?.fill(0);
    secrets.delete(m.epochId);
    for (const kid of [...keys.keys()]) if (sf.splitKid(kid)[0] === m.epochId) keys.delete(kid);
  }
};

setInterval(() => self.postMessage({type: 'stats', ...stats}), 250);

function encrypter(kind) {
  return async (frame, controller) => {
    if (!send) { stats.dropped++; return; }   // waiting for key: send nothing in the clear
    const data = new Uint8Array(frame.data);
    const n = sf.clearPrefix(kind, data);
    const meta = data.subarray(0, n);
    const ctr = send.ctr++;
    const sealed = await sf.protect(await send.fk, ctr, data.subarray(n), meta);
    const out = new Uint8Array(n + sealed.length);
    out.set(meta, 0);
    out.set(sealed, n);
    frame.data = out.buffer;
    stats.encrypted++;
    controller.enqueue(frame);
  };
}

function decrypter(kind) {
  return async (frame, controller) => {
    const data = new Uint8Array(frame.data);
    const n = sf.clearPrefix(kind, data);
    let kid;
    try { kid = sf.parseHeader(data.subarray(n)).kid; } catch { stats.failed++; return; }
    const fk = keyFor(kid);
    if (!fk) { stats.noKey++; return; }
    try {
      const plain = await sf.unprotect(await fk, data.subarray(n), data.subarray(0, n));
      const out = new Uint8Array(n + plain.length);
      out.set(data.subarray(0, n), 0);
      out.set(plain, n);
      frame.data = out.buffer;
      stats.decrypted++;
      stats.lastRecvEpoch = sf.splitKid(kid)[0];
      controller.enqueue(frame);
    } catch {
      stats.failed++;
    }
  };
}

self.onrtctransform = (event) => {
  const t = event.transformer;
  const {side, kind} = t.options;
  const transform = side === 'send' ? encrypter(kind) : decrypter(kind);
  t.readable.pipeThrough(new TransformStream({transform})).pipeTo(t.writable);
};
