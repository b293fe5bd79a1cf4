//! The browser's SFrame (WebCrypto, crates/blindfold-signal/web/sframe.js) and the native
//! one (blindfold-e2ee over the `sframe` crate) are one format with one key schedule: in
//! real headless Chromium, the page derives the same base key from an epoch secret, opens
//! frames the native side sealed, and seals frames the native side opens. Tampered frames
//! and frames under another sender's or another secret's key are refused on both sides.

mod common;

use blindfold::e2ee::{
    EpochId, SframeBaseKey, SframeSender, clear_prefix, sframe_kid, sframe_open,
    sframe_open_with_meta,
};
use common::chromium::{self, Chromium};
use serde_json::{Value, json};

const SFRAME_JS: &str = include_str!("../crates/blindfold-signal/web/sframe.js");
const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>sframe</title><script>
window.hex = (b) => Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
window.unhex = (h) => new Uint8Array(h.match(/../g).map(x => parseInt(x, 16)));
</script>"#;

fn js(page: &common::chromium::Page<'_>, body: &str) -> Value {
    page.eval(&format!(
        "(async () => {{ const m = await import('/sframe.js'); {body} }})()"
    ))
}

#[test]
fn browser_and_native_sframe_open_each_others_frames() {
    assert!(
        chromium::available(),
        "this test needs Debian's `chromium` (.ci/run installs it)"
    );
    let site = chromium::static_files(vec![
        ("/", "text/html; charset=utf-8", PAGE),
        ("/sframe.js", "text/javascript", SFRAME_JS),
    ]);
    let browser = Chromium::start();
    let page = browser.page(&site);

    let secret: [u8; 32] = rand::random();
    let epoch = EpochId::new(5, 2);
    let epoch_u32 = u32::from_be_bytes(epoch.to_bytes());
    let (leaf, other_leaf) = (3u32, 4u32);
    let base = SframeBaseKey::derive(&secret, epoch, leaf);
    let kid = sframe_kid(epoch, leaf).unwrap();
    let sh = hex::encode(secret);

    // 1. The same base key from the same epoch secret.
    let theirs = js(
        &page,
        &format!("return hex(await m.baseKey(unhex('{sh}'), {epoch_u32}, {leaf}));"),
    );
    assert_eq!(theirs, json!(hex::encode(base.as_bytes())));

    // 2. Native seals, browser opens (frame counters 0..3, so short and long headers).
    let mut tx = SframeSender::new(&base, kid).unwrap();
    let plains: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 40 + usize::from(i)]).collect();
    for p in &plains {
        let frame = hex::encode(tx.protect(p).unwrap());
        let opened = js(
            &page,
            &format!(
                "const b = await m.baseKey(unhex('{sh}'), {epoch_u32}, {leaf});
                 const fk = await m.frameKey(b, m.kid({epoch_u32}, {leaf}));
                 return hex(await m.unprotect(fk, unhex('{frame}')));"
            ),
        );
        assert_eq!(opened, json!(hex::encode(p)));
    }

    // 3. Browser seals (counters 0 and 300: both header forms), native opens.
    for ctr in [0u32, 300] {
        let sealed = js(
            &page,
            &format!(
                "const b = await m.baseKey(unhex('{sh}'), {epoch_u32}, {leaf});
                 const fk = await m.frameKey(b, m.kid({epoch_u32}, {leaf}));
                 return hex(await m.protect(fk, {ctr}, new TextEncoder().encode('frame {ctr}')));"
            ),
        );
        let sealed = hex::decode(sealed.as_str().unwrap()).unwrap();
        let opened = sframe_open(&base, kid, &sealed).expect("native opens the browser's frame");
        assert_eq!(opened, format!("frame {ctr}").into_bytes());
        // Controls: a flipped byte, another sender's key, another call's secret.
        let mut t = sealed.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(sframe_open(&base, kid, &t).is_err());
        let other = SframeBaseKey::derive(&secret, epoch, other_leaf);
        assert!(sframe_open(&other, kid, &sealed).is_err());
        let stranger = SframeBaseKey::derive(&[0x55; 32], epoch, leaf);
        assert!(sframe_open(&stranger, kid, &sealed).is_err());
    }

    // 3b. A VP8 keyframe with its payload header kept clear as authenticated metadata,
    // split by the same rule on both sides, each way.
    let vp8: Vec<u8> = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
        .into_iter()
        .chain(0..50u8)
        .collect();
    let n = clear_prefix(true, &vp8);
    let (meta, body) = vp8.split_at(n);
    let sealed = hex::encode(tx.protect_with_meta(body, meta).unwrap());
    let (vh, mh) = (hex::encode(&vp8), hex::encode(meta));
    let opened = js(
        &page,
        &format!(
            "const b = await m.baseKey(unhex('{sh}'), {epoch_u32}, {leaf});
             const fk = await m.frameKey(b, m.kid({epoch_u32}, {leaf}));
             const n = m.clearPrefix('video', unhex('{vh}'));
             return [n, hex(await m.unprotect(fk, unhex('{sealed}'), unhex('{mh}')))];"
        ),
    );
    assert_eq!(opened, json!([n, hex::encode(body)]));
    let from_browser = js(
        &page,
        &format!(
            "const b = await m.baseKey(unhex('{sh}'), {epoch_u32}, {leaf});
             const fk = await m.frameKey(b, m.kid({epoch_u32}, {leaf}));
             const d = unhex('{vh}'); const n = m.clearPrefix('video', d);
             return hex(await m.protect(fk, 9, d.subarray(n), d.subarray(0, n)));"
        ),
    );
    let from_browser = hex::decode(from_browser.as_str().unwrap()).unwrap();
    assert_eq!(
        sframe_open_with_meta(&base, kid, &from_browser, meta).unwrap(),
        body
    );
    assert!(
        sframe_open(&base, kid, &from_browser).is_err(),
        "metadata is authenticated"
    );

    // 4. The browser refuses a tampered frame and a frame under another secret.
    let frame = tx.protect(b"last").unwrap();
    let mut tampered = frame.clone();
    tampered[frame.len() / 2] ^= 0x80;
    let (good, bad) = (hex::encode(&frame), hex::encode(&tampered));
    let verdicts = js(
        &page,
        &format!(
            "const k = m.kid({epoch_u32}, {leaf});
             const right = await m.frameKey(await m.baseKey(unhex('{sh}'), {epoch_u32}, {leaf}), k);
             const wrong = await m.frameKey(await m.baseKey(new Uint8Array(32), {epoch_u32}, {leaf}), k);
             const ok = async (fk, f) => m.unprotect(fk, unhex(f)).then(() => true, () => false);
             return [await ok(right, '{good}'), await ok(right, '{bad}'), await ok(wrong, '{good}')];"
        ),
    );
    assert_eq!(verdicts, json!([true, false, false]));
}
