//! A deterministic fuzz test: mutated lines never panic the parser, and what parses
//! prints back to itself.

use base64::Engine as _;

use super::test_cert_der;
use crate::handshake::Handshake;

/// splitmix64: a tiny deterministic PRNG so the fuzz test needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[test]
fn fuzz_never_panics_and_round_trips() {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(test_cert_der());
    let seeds: Vec<String> = vec![
        "1|1|unix|/tmp/plugin1234567890|grpc|".into(),
        "1|1|unix|/tmp/plugin1234567890|grpc||true".into(),
        "1|1|tcp|127.0.0.1:1234|grpc".into(),
        "1|2|tcp|[::1]:50077|grpc||T".into(),
        "1|1|unix|/tmp/p|netrpc".into(),
        format!("1|1|unix|/tmp/p|grpc|{b64}"),
        format!("1|1|tcp|10.0.0.1:80|grpc|{b64}|true"),
    ];
    let alphabet: Vec<char> = "|0123456789:/.[]aefgiprtuxTF=+ \t\r\n\0é€🦀\u{7f}"
        .chars()
        .collect();
    let mut rng = Rng(0x1234_5678);
    let mut valid = 0;
    for i in 0..5000 {
        let mut line: Vec<char> = if i % 10 == 0 {
            // Purely random.
            (0..rng.below(80)).map(|_| *rng.pick(&alphabet)).collect()
        } else {
            rng.pick(&seeds).chars().collect()
        };
        for _ in 0..rng.below(4) {
            match rng.below(4) {
                0 if !line.is_empty() => {
                    let at = rng.below(line.len());
                    line.remove(at);
                }
                1 => {
                    let at = rng.below(line.len() + 1);
                    line.insert(at, *rng.pick(&alphabet));
                }
                2 if !line.is_empty() => {
                    let at = rng.below(line.len());
                    line[at] = *rng.pick(&alphabet);
                }
                _ => line.truncate(rng.below(line.len() + 1)),
            }
        }
        let line: String = line.into_iter().collect();
        match Handshake::parse(&line) {
            Ok(h) => {
                valid += 1;
                let printed = h.to_string();
                assert_eq!(
                    Handshake::parse(&printed).unwrap(),
                    h,
                    "{line:?} -> {printed:?}"
                );
                let _ = h.validate(&[1, 2], rng.below(2) == 0);
            }
            Err(e) => {
                // Messages render and stay bounded even for huge inputs.
                let _ = e.to_string();
            }
        }
    }
    assert!(
        valid > 500,
        "only {valid} valid lines; the mutator is too aggressive"
    );
}
