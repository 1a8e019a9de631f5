//! The driver's command line.

use std::path::PathBuf;

use crate::BoxError;

#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) go_dir: PathBuf,
    pub(crate) rounds: usize,
    pub(crate) smoke: bool,
    pub(crate) out: Option<PathBuf>,
    pub(crate) date: String,
    pub(crate) command: String,
    pub(crate) only: Vec<String>,
    /// bench-kube's JSON (scenario 8), when it ran.
    pub(crate) kubernetes: Option<PathBuf>,
}

pub(crate) fn parse() -> Result<Args, BoxError> {
    let mut a = Args {
        go_dir: PathBuf::new(),
        rounds: 5,
        smoke: false,
        out: None,
        date: "unknown date".into(),
        command: "scripts/bench.sh".into(),
        only: Vec::new(),
        kubernetes: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--go-dir" => a.go_dir = value()?.into(),
            "--rounds" => a.rounds = value()?.parse::<usize>()?.max(1),
            "--smoke" => a.smoke = true,
            "--out" => a.out = Some(value()?.into()),
            "--date" => a.date = value()?,
            "--command" => a.command = value()?,
            "--kubernetes" => a.kubernetes = Some(value()?.into()),
            "--only" => a.only = value()?.split(',').map(str::to_string).collect(),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if a.go_dir.as_os_str().is_empty() {
        return Err("--go-dir DIR (bench-go-host and the Go kv-plugin) is required".into());
    }
    if a.smoke {
        a.rounds = 1;
    }
    Ok(a)
}
