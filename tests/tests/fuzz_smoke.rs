//! A short, bounded run of every fuzz target under `fuzz/` (see `fuzz/README.md`): each
//! `intercom::__fuzz` wrapper gets its seeds, a few thousand seeded mutations of them and
//! some random bytes. A panic in a wrapper (the code under test panicked or broke a
//! property such as the handshake's Display round trip) fails the test and prints the
//! input. The mutations are deterministic; set `INTERCOM_FUZZ_SEED` to try others, and
//! `INTERCOM_FUZZ_CORPUS=fuzz/corpus` to write the seeds out as starting corpora for
//! `cargo fuzz` (one directory per target).
//!
//! The real, coverage-guided runs are `cargo +nightly fuzz run <target>` in `fuzz/`.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use intercom::__fuzz;
use intercom::handshake::{Handshake, Network, Protocol};
use intercom::prost::Message as _;

/// SplitMix64: tiny, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Self {
        let seed = std::env::var("INTERCOM_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0x1f2e_3d4c_5b6a_7988);
        Rng(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// libFuzzer-style byte mutations: 1 to 4 of flip, overwrite, insert, delete, duplicate,
/// dictionary insert, truncate, splice with another seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let mut data = rng.pick(seeds).clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 if at < data.len() => data[at] = rng.next() as u8,
            2 => data.insert(at, rng.next() as u8),
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            4 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk);
            }
            5 if !dict.is_empty() => {
                let token = rng.pick(dict);
                data.splice(at..at, token.iter().copied());
            }
            6 => data.truncate(at),
            _ => {
                let other = rng.pick(seeds);
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    data
}

/// Feeds `target` the seeds, `mutations` mutated seeds and `random` random inputs;
/// returns how many it accepted. A panic is re-raised with the input.
fn run(
    name: &str,
    target: impl Fn(&[u8]) -> bool,
    seeds: &[Vec<u8>],
    dict: &[&[u8]],
    mutations: usize,
    random: usize,
) -> usize {
    if let Some(dir) = std::env::var_os("INTERCOM_FUZZ_CORPUS") {
        let dir = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).expect("write a seed");
        }
    }
    let mut rng = Rng::new(
        name.bytes()
            .fold(0, |h: u64, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );
    let mut inputs = seeds.to_vec();
    inputs.extend((0..mutations).map(|_| mutate(&mut rng, seeds, dict)));
    inputs.extend((0..random).map(|_| rng.bytes(256)));
    let mut accepted = 0;
    for input in &inputs {
        match catch_unwind(AssertUnwindSafe(|| target(input))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!(
                "fuzz target `{name}` panicked on input {:?} (hex {})",
                String::from_utf8_lossy(input),
                hex::encode(input)
            ),
        }
    }
    accepted
}

fn cert_der() -> Vec<u8> {
    intercom::__testing::Identity::generate()
        .expect("generate a certificate")
        .cert_der()
        .to_vec()
}

#[test]
fn fuzz_smoke_handshake_round_trips() {
    let cert = cert_der();
    let with_cert = Handshake {
        server_cert: Some(cert.clone()),
        ..Handshake::new(1, Network::Unix, "/tmp/plugin")
    }
    .to_string();
    let seeds: Vec<Vec<u8>> = [
        "1|1|unix|/tmp/plugin1234567890|grpc|",
        "1|1|unix|/tmp/plugin1234567890|grpc||true\r\n",
        "1|3|tcp|127.0.0.1:1234|grpc||false",
        "1|2|tcp|[::1]:65535|netrpc",
        "1|1|tcp|10.0.0.1:50077",
        "1|1|unix|/p|grpc|short-legacy-filler|T|extra|fields",
        "  1|4294967295|unix|/a b/c|grpc|\n",
        with_cert.as_str(),
        "1,2,3",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let dict: &[&[u8]] = &[
        b"|",
        b"1",
        b"0",
        b"unix",
        b"tcp",
        b"grpc",
        b"netrpc",
        b"true",
        b"false",
        b"/",
        b"127.0.0.1:",
        b"[::1]:",
        b"1234",
        b"\r\n",
        b" ",
        b"4294967296",
        b"+",
        b"\0",
        b"\xc3\xa9",
        b"=",
        b",",
    ];
    // The round trip, asserted here as well as inside the wrapper.
    let round_trip = |data: &[u8]| {
        if let Ok(h) = Handshake::parse_bytes(data) {
            assert_eq!(Handshake::parse(&h.to_string()).ok(), Some(h));
        }
        __fuzz::handshake(data)
    };
    let accepted = run("handshake", round_trip, &seeds, dict, 6000, 500);
    assert!(accepted >= 300, "only {accepted} inputs parsed");

    // And from the value side: every well-formed handshake prints a line that parses back.
    let mut rng = Rng::new(1);
    for _ in 0..2000 {
        let network = *rng.pick(&[Network::Unix, Network::Tcp]);
        let address = match network {
            Network::Unix => format!("/tmp/{}", hex::encode(rng.bytes(8))),
            Network::Tcp => {
                let port = 1 + rng.below(65535);
                if rng.below(2) == 0 {
                    format!("127.0.{}.{}:{port}", rng.below(256), rng.below(256))
                } else {
                    format!("[::{:x}]:{port}", rng.below(65536))
                }
            }
        };
        let h = Handshake {
            core_version: intercom::CORE_PROTOCOL_VERSION,
            app_version: rng.next() as u32,
            network,
            address,
            protocol: *rng.pick(&[Protocol::Grpc, Protocol::NetRpc]),
            server_cert: (rng.below(4) == 0).then(|| cert.to_vec()),
            multiplex: *rng.pick(&[None, Some(true), Some(false)]),
        };
        let line = h.to_string();
        assert_eq!(Handshake::parse(&line).ok(), Some(h), "{line:?}");
        assert!(__fuzz::handshake(line.as_bytes()));
    }
}

#[test]
fn fuzz_smoke_certificate_checks() {
    let der = cert_der();
    let pem = intercom::__testing::Identity::generate()
        .expect("generate a certificate")
        .cert_pem();
    let seeds = vec![der.clone(), pem.clone().into_bytes(), der[..40].to_vec()];
    let dict: &[&[u8]] = &[
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\n",
        b"\n",
        b"\x30\x82",
        b"\x30\x81\xff",
        b"\x06\x03\x55\x1d\x11",
        b"\xa0\x03\x02\x01\x02",
    ];
    let accepted = run("certificate", __fuzz::certificate, &seeds, dict, 2500, 200);
    assert!(__fuzz::certificate(&der), "a real certificate must pass");
    assert!(accepted >= 1, "no input was accepted as a certificate");
}

#[test]
fn fuzz_smoke_hclog_parser() {
    let seeds: Vec<Vec<u8>> = [
        "{\"@level\":\"warn\",\"@message\":\"disk low\",\"free\":\"3%\",\"n\":3}\n",
        "{\"@level\":\"INFO\",\"@message\":\"x\",\"@module\":\"m\",\"@timestamp\":\"2024-05-01T12:00:00.123456Z\",\"a\":{\"b\":[1,null]}}\r\n",
        "{\"@level\":7,\"@message\":[\"not text\"]}\n",
        "[INFO] ready\n[ERROR]   bad  \n[DEBUG]\n",
        "panic: oh no\ngoroutine 1 [running]:\n\tmain.go:12\n",
        "thread 'main' panicked at src/main.rs:1:1:\nboom\n",
        "fatal error: out of memory\n",
        "plain text with \"quotes\" and = signs\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let dict: &[&[u8]] = &[
        b"{",
        b"}",
        b"\"",
        b":",
        b",",
        b"[",
        b"]",
        b"null",
        b"\"@level\":",
        b"\"@message\":",
        b"\"@module\":",
        b"\"error\"",
        b"\n",
        b"\r\n",
        b"panic: ",
        b"[WARN]",
        b"\\u0000",
        b"\xff",
        b"1e999",
    ];
    let accepted = run("hclog", __fuzz::hclog, &seeds, dict, 4000, 300);
    assert!(accepted >= 100, "only {accepted} inputs had hclog fields");
}

/// One yamux frame: version 0, type, flags, stream id, length, then `body`.
fn frame(kind: u8, flags: u16, stream: u32, length: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, kind];
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn fuzz_smoke_mux_session() {
    const DATA: u8 = 0;
    const WINDOW: u8 = 1;
    const PING: u8 = 2;
    const GO_AWAY: u8 = 3;
    const SYN: u16 = 1;
    const ACK: u16 = 2;
    const FIN: u16 = 4;
    const RST: u16 = 8;
    let seed = |mode: u8, frames: &[Vec<u8>]| {
        let mut out = vec![mode];
        frames.iter().for_each(|f| out.extend_from_slice(f));
        out
    };
    let seeds = vec![
        // Plugin side: the host opens stream 1, sends data, closes it.
        seed(
            1,
            &[
                frame(WINDOW, SYN, 1, 0, b""),
                frame(DATA, 0, 1, 5, b"hello"),
                frame(DATA, FIN, 1, 0, b""),
            ],
        ),
        // Host side: the plugin opens stream 2 (a broker connection), resets it.
        seed(
            0,
            &[
                frame(DATA, SYN, 2, 2, b"hi"),
                frame(WINDOW, 0, 2, 1 << 20, b""),
                frame(WINDOW, RST, 2, 0, b""),
            ],
        ),
        // Host side opening stream 1, answered by the plugin.
        seed(
            2,
            &[
                frame(WINDOW, ACK, 1, 0, b""),
                frame(DATA, 0, 1, 4, b"pong"),
                frame(DATA, FIN, 1, 0, b""),
            ],
        ),
        seed(
            3,
            &[frame(PING, SYN, 0, 7, b""), frame(GO_AWAY, 0, 0, 0, b"")],
        ),
        Vec::new(),
    ];
    let dict: &[&[u8]] = &[
        &frame(WINDOW, SYN, 1, 0, b""),
        &frame(DATA, SYN, 2, 0, b""),
        &frame(DATA, 0, 1, 0xffff_ffff, b""),
        &frame(PING, ACK, 0, 1, b""),
        &frame(GO_AWAY, 0, 0, 2, b""),
        b"\x00\x00\x00\x00",
        b"\xff\xff\xff\xff",
    ];
    let accepted = run("mux_session", __fuzz::mux_session, &seeds, dict, 400, 50);
    assert!(accepted >= 2, "only {accepted} inputs opened a stream");
}

fn everything() -> __fuzz::Everything {
    let point = |x| __fuzz::Point {
        x,
        y: -x,
        label: Some(format!("p{x}")),
        tags: vec!["a".into(), String::new()],
    };
    __fuzz::Everything {
        a: -8,
        b: 16,
        c: -32,
        d: i64::MIN,
        e: 255,
        f: 65535,
        g: 32,
        h: u64::MAX,
        i: 1.5,
        j: f64::NAN,
        k: true,
        s: "text".into(),
        bytes: vec![0, 1, 2],
        shared: intercom::prost::bytes::Bytes::from_static(b"shared"),
        numbers: vec![-1, 0, 1],
        floats: vec![0.5, -0.0],
        strings: vec!["x".into(), "y".into()],
        blobs: vec![vec![], vec![9]],
        maybe: Some(0),
        maybe_text: Some(String::new()),
        map: BTreeMap::from([("k".into(), 1)]),
        ordered: BTreeMap::from([(1, __fuzz::Color::Blue), (2, __fuzz::Color::Green)]),
        points_by_name: BTreeMap::from([("origin".into(), point(0))]),
        point: point(1),
        maybe_point: Some(point(2)),
        points: vec![point(3), point(4)],
        color: __fuzz::Color::Green,
        colors: vec![__fuzz::Color::Red, __fuzz::Color::Blue],
        list: Some(__fuzz::Node {
            value: 1,
            next: Some(Box::new(__fuzz::Node {
                value: 2,
                next: None,
            })),
        }),
    }
}

#[test]
fn fuzz_smoke_message_decode() {
    let mut deep = __fuzz::Node {
        value: 0,
        next: None,
    };
    for value in 1..90 {
        deep = __fuzz::Node {
            value,
            next: Some(Box::new(deep)),
        };
    }
    let seeds = vec![
        everything().encode_to_vec(),
        deep.encode_to_vec(),
        __fuzz::Point {
            x: 1,
            y: -1,
            label: None,
            tags: vec!["t".into()],
        }
        .encode_to_vec(),
        Vec::new(),
    ];
    let dict: &[&[u8]] = &[
        b"\x08",
        b"\x10\x01",
        b"\x1a\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x80",
        b"\x0a\x7f",
        b"\xba\x01\x02\x08\x07",
    ];
    let accepted = run(
        "message_decode",
        __fuzz::message_decode,
        &seeds,
        dict,
        4000,
        500,
    );
    assert!(accepted >= 100, "only {accepted} inputs decoded");
}

/// Replaces or removes one random node of `value`.
fn mutate_json(rng: &mut Rng, value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let depth = rng.below(8);
    let mut node = value;
    for _ in 0..depth {
        let len = match node {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if len == 0 {
            break;
        }
        let i = rng.below(len);
        node = match node {
            Value::Object(map) => map.values_mut().nth(i).expect("index below len"),
            Value::Array(items) => &mut items[i],
            _ => unreachable!("only containers have children"),
        };
    }
    let replacements = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(50077),
        json!(2_147_483_648_i64),
        json!(""),
        json!("Not-A-Label"),
        json!("plugin"),
        json!("intercom.dev/plugin"),
        json!({}),
        json!([]),
        json!({"intercom.dev/plugin-port": "0", "intercom.dev/plugin-container": "side"}),
        json!([{"name": "side", "image": "x"}]),
    ];
    match (rng.below(3), &mut *node) {
        (0, Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned();
            if let Some(key) = key {
                map.remove(&key);
            }
        }
        (1, Value::Array(items)) if !items.is_empty() => {
            let copy = items[rng.below(items.len())].clone();
            items.push(copy);
        }
        _ => *node = rng.pick(&replacements).clone(),
    }
}

#[test]
fn fuzz_smoke_kube_validate() {
    use intercom::runtime::kubernetes::PluginWorkload;
    let (deployment, service) = PluginWorkload::new("registry.example/greeter:1.2")
        .replicas(2)
        .port(7000)
        .build("greeter");
    let pair = serde_json::json!({ "deployment": deployment, "service": service });
    let mut rng = Rng::new(2);
    let mut seeds = vec![
        serde_json::to_vec(&pair).expect("serialize"),
        serde_json::to_vec(&deployment).expect("serialize"),
        b"{}".to_vec(),
    ];
    for _ in 0..1500 {
        let mut value = pair.clone();
        for _ in 0..=rng.below(3) {
            mutate_json(&mut rng, &mut value);
        }
        seeds.push(serde_json::to_vec(&value).expect("serialize"));
    }
    let dict: &[&[u8]] = &[b"{", b"}", b"\"", b":", b",", b"null", b"-1", b"\"spec\":"];
    let accepted = run(
        "kube_validate",
        __fuzz::kube_validate,
        &seeds,
        dict,
        1000,
        100,
    );
    assert!(
        __fuzz::kube_validate(&seeds[0]),
        "a built workload must pass"
    );
    assert!(accepted >= 100, "only {accepted} inputs passed validation");
}
