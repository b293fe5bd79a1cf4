// SFrame (RFC 9605) for the browser, suite AES_128_GCM_SHA256_128 (0x0004), keyed the way
// blindfold's native participants key it (crates/blindfold-e2ee/src/frames.rs): every
// primitive is WebCrypto's (HKDF-SHA256, AES-GCM); this file only lays out bytes.
//
// KID = epoch id (MLS epoch 16 | ratchet step 16) << 16 | sender leaf index (16).
// Base key = HKDF-SHA256(salt "blindfold/v1 sframe", epoch secret,
//                        "blindfold/v1 sframe base key" || epoch id (4) || leaf (4)), 32 octets.
// Then RFC 9605 §4.4.2: key = HKDF(salt "", base, "SFrame 1.0 Secret key " || KID (8) || suite (2)),
// salt likewise with "Secret salt "; nonce = salt XOR counter; AAD = the SFrame header.

const SUITE = 0x0004;
const NK = 16;
const NN = 12;
const enc = new TextEncoder();
const subtle = crypto.subtle;

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function be(value, len) {
  const out = new Uint8Array(len);
  let v = BigInt(value);
  for (let i = len - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

async function hkdf(ikm, salt, info, len) {
  const key = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits({name: 'HKDF', hash: 'SHA-256', salt, info}, key, len * 8);
  return new Uint8Array(bits);
}

/** The KID of `leaf`'s frames under epoch id `epochId` (a u32: MLS epoch << 16 | step). */
export function kid(epochId, leaf) {
  if (leaf < 0 || leaf > 0xffff) throw new Error('leaf index does not fit the KID');
  return (BigInt(epochId >>> 0) << 16n) | BigInt(leaf);
}

/** [epochId, leaf] of a KID. */
export function splitKid(k) {
  return [Number(k >> 16n), Number(k & 0xffffn)];
}

/** A sender's 32-octet base key under an epoch, from that epoch's (ratcheted) secret. */
export async function baseKey(epochSecret, epochId, leaf) {
  const info = concat(enc.encode('blindfold/v1 sframe base key'), be(epochId, 4), be(leaf, 4));
  return hkdf(epochSecret, enc.encode('blindfold/v1 sframe'), info, 32);
}

/** The AEAD key and salt for one KID (RFC 9605 §4.4.2). */
export async function frameKey(base, k) {
  const tail = concat(be(k, 8), be(SUITE, 2));
  const keyBytes = await hkdf(base, new Uint8Array(), concat(enc.encode('SFrame 1.0 Secret key '), tail), NK);
  const salt = await hkdf(base, new Uint8Array(), concat(enc.encode('SFrame 1.0 Secret salt '), tail), NN);
  const key = await subtle.importKey('raw', keyBytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
  return {kid: k, key, salt};
}

// Minimal big-endian octets of a non-negative BigInt (at least one).
function minimal(v) {
  let n = 1;
  while (n < 8 && (v >> BigInt(8 * n)) > 0n) n++;
  return be(v, n);
}

/** The SFrame header for (kid, counter): config byte |X|K(3)|Y|C(3)|, then KID, CTR. */
export function header(k, ctr) {
  const parts = [];
  let cfg = 0;
  if (k < 8n) { cfg |= Number(k) << 4; } else { const b = minimal(k); cfg |= 0x80 | ((b.length - 1) << 4); parts.push(b); }
  if (ctr < 8n) { cfg |= Number(ctr); } else { const b = minimal(ctr); cfg |= 0x08 | (b.length - 1); parts.push(b); }
  return concat(Uint8Array.of(cfg), ...parts);
}

/** Parses a frame's header: {kid, ctr, len}; throws on a short frame. */
export function parseHeader(frame) {
  if (frame.length < 1) throw new Error('empty frame');
  const cfg = frame[0];
  let at = 1;
  const field = (extended, value) => {
    if (!extended) return BigInt(value);
    const n = value + 1;
    if (frame.length < at + n) throw new Error('short SFrame header');
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(frame[at + i]);
    at += n;
    return v;
  };
  const k = field(cfg & 0x80, (cfg >> 4) & 0x07);
  const ctr = field(cfg & 0x08, cfg & 0x07);
  return {kid: k, ctr, len: at};
}

function nonce(salt, ctr) {
  const c = be(ctr, NN);
  return salt.map((s, i) => s ^ c[i]);
}

/**
 * Encrypts `plain` as frame number `ctr` under `fk` (from frameKey). `meta` (RFC 9605
 * metadata) is authenticated, not encrypted, and not part of the output: AAD = header || meta.
 */
export async function protect(fk, ctr, plain, meta = new Uint8Array()) {
  const h = header(fk.kid, BigInt(ctr));
  const ct = await subtle.encrypt({name: 'AES-GCM', iv: nonce(fk.salt, BigInt(ctr)), additionalData: concat(h, meta), tagLength: 128}, fk.key, plain);
  return concat(h, new Uint8Array(ct));
}

/** Decrypts a frame with `fk`, whose KID it must name; throws if it does not verify. */
export async function unprotect(fk, frame, meta = new Uint8Array()) {
  const h = parseHeader(frame);
  if (h.kid !== fk.kid) throw new Error('frame is for another key id');
  const pt = await subtle.decrypt({name: 'AES-GCM', iv: nonce(fk.salt, h.ctr), additionalData: concat(frame.subarray(0, h.len), meta), tagLength: 128}, fk.key, frame.subarray(h.len));
  return new Uint8Array(pt);
}

/**
 * How many leading octets of an encoded frame stay in the clear (as authenticated
 * metadata): VP8's payload header, which the receiving browser's depacketiser reads to
 * find keyframes (10 octets on a keyframe, 3 otherwise, told by bit 0 of the first);
 * nothing of audio. Natives apply the same rule (crates/blindfold-e2ee/src/frames.rs).
 */
export function clearPrefix(kind, data) {
  if (kind !== 'video' || data.length === 0) return 0;
  return Math.min(data.length, (data[0] & 0x01) === 0 ? 10 : 3);
}
