//! Tests of the log line parser, the `tracing` events it feeds and the hclog layer, by
//! concern.

mod emit;
mod hclog;
mod parse;

/// `(key, value)` pairs as the owned strings of [`LogRecord::fields`](crate::logs::LogRecord::fields).
fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
