//! Tests of `PLUGIN_PROTOCOL_VERSIONS`: negotiation, printing and parsing.

use crate::handshake::{format_versions, negotiate_version, parse_versions};

#[test]
fn version_negotiation() {
    type Case<'a> = (Option<&'a str>, &'a [u32], u32, &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (Some("1,2,3"), &[2, 3, 4], 3, &[]),
        (Some("3,1,2"), &[4, 3, 2], 3, &[]),
        (None, &[2, 3, 4], 2, &[]),
        (Some(""), &[4, 2, 3], 2, &[]),
        (Some("x,2"), &[1, 2, 3], 2, &["x"]),
        (Some("5,6"), &[3, 1, 2], 1, &[]),
        (Some("1,,2"), &[1], 1, &[""]),
        (Some(" 2 , 1"), &[1, 2], 2, &[]),
        (Some("-1,2"), &[1], 1, &["-1"]),
        (Some("1"), &[], 0, &[]),
    ];
    for (env, plugin, want, invalid) in cases {
        let (got, bad) = negotiate_version(*env, plugin);
        assert_eq!(got, *want, "{env:?} {plugin:?}");
        assert_eq!(bad, *invalid, "{env:?} {plugin:?}");
    }
}

#[test]
fn versions_format_and_parse() {
    assert_eq!(format_versions(&[1, 2, 3]), "1,2,3");
    assert_eq!(format_versions(&[7]), "7");
    assert_eq!(format_versions(&[]), "");
    assert_eq!(parse_versions("1,2,3"), (vec![1, 2, 3], vec![]));
    assert_eq!(parse_versions(""), (vec![], vec![]));
    let vs = [4, 10, 1];
    assert_eq!(parse_versions(&format_versions(&vs)).0, vs);
}
