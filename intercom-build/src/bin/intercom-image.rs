//! `intercom-image`: an OCI image archive from one binary, without a registry.
//!
//! Run `intercom-image --help` for the usage. Prints the manifest digest on stdout.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use intercom_build::image::{self, ImageBuilder, Libraries, Platform};

const USAGE: &str = "\
usage: intercom-image <binary> --tag <name:tag> -o <archive.tar> [options] [-- <args>...]

Writes an OCI image-layout archive (also loadable by `docker load`) holding <binary>,
its loader and shared libraries, and prints the manifest digest on stdout.

options:
  --tag REF                  image reference, `name:tag` (required)
  -o, --output PATH          the archive to write (required)
  --lib-from-ldd             add the loader and libraries `ldd` lists (the default)
  --static                   add no libraries; fail if the binary is dynamic
  --dest PATH                the binary's path in the image (default /usr/local/bin/<name>)
  --file SRC:DEST            copy a host file into the image (repeatable)
  --dir PATH[:MODE]          add an empty directory, octal MODE, default 755 (repeatable)
  --user USER[:GROUP]        run as this user, e.g. 65532 or 65532:65532
  --workdir DIR              the working directory (created if missing)
  --env KEY=VALUE            set an environment variable (repeatable)
  --label KEY=VALUE          set a label (repeatable)
  --platform OS/ARCH[/VAR]   the image platform (default: this machine's, e.g. linux/amd64)
  --import-containerd SOCK   then `ctr images import` the archive into this containerd
  --namespace NS             containerd namespace for --import-containerd (default k8s.io)
  --kind-load CLUSTER        then `kind load image-archive` the archive into this cluster
  -h, --help                 print this help
  -- ARGS...                 default arguments of the entrypoint (the image's Cmd)";

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("unknown option `{0}`")]
    Unknown(String),
    #[error("`{0}` needs a value")]
    NeedsValue(String),
    #[error("invalid `{flag}` value `{value}`: expected {expected}")]
    BadValue {
        flag: String,
        value: String,
        expected: &'static str,
    },
    #[error("an argument is not UTF-8: {0:?}")]
    NotUtf8(std::ffi::OsString),
    #[error("a second binary `{0}` (only one is allowed; put its arguments after `--`)")]
    SecondBinary(String),
}

/// What to do after the image is written.
#[derive(Debug, Default)]
struct After {
    containerd: Option<(PathBuf, String)>,
    kind: Option<String>,
}

fn main() -> ExitCode {
    let args = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().map_err(UsageError::NotUtf8))
        .collect()
    {
        Ok(args) => args,
        Err(err) => return usage_error(&err),
    };
    match parse(args) {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some((builder, output, after))) => match run(builder, &output, &after) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprint!("intercom-image: error: {err}");
                let mut source = err.source();
                while let Some(cause) = source {
                    eprint!(": {cause}");
                    source = cause.source();
                }
                eprintln!();
                ExitCode::FAILURE
            }
        },
        Err(err) => usage_error(&err),
    }
}

fn usage_error(err: &UsageError) -> ExitCode {
    eprintln!("intercom-image: {err}\n\n{USAGE}");
    ExitCode::from(2)
}

fn run(builder: ImageBuilder, output: &Path, after: &After) -> Result<(), Box<dyn Error>> {
    let image = builder.build()?;
    image.write_oci_archive(output)?;
    eprintln!(
        "intercom-image: wrote {} ({}, {} files) to {}",
        image.reference(),
        image.platform(),
        image.files().len(),
        output.display()
    );
    if let Some((socket, namespace)) = &after.containerd {
        image::import_into_containerd(output, socket, namespace)?;
        eprintln!(
            "intercom-image: imported into containerd {} (namespace {namespace})",
            socket.display()
        );
    }
    if let Some(cluster) = &after.kind {
        image::load_into_kind(output, cluster)?;
        eprintln!("intercom-image: loaded into kind cluster {cluster}");
    }
    println!("{}", image.manifest_digest());
    Ok(())
}

type Step = Box<dyn FnOnce(ImageBuilder) -> ImageBuilder>;

/// The command line, read.
#[derive(Default)]
struct Cli {
    binary: Option<PathBuf>,
    tag: Option<String>,
    output: Option<PathBuf>,
    socket: Option<PathBuf>,
    namespace: Option<String>,
    kind: Option<String>,
    /// Builder calls, in command-line order.
    steps: Vec<Step>,
}

/// Parses the arguments (without the program name); `None` for `--help`.
fn parse(args: Vec<String>) -> Result<Option<(ImageBuilder, PathBuf, After)>, UsageError> {
    let mut cli = Cli::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| UsageError::NeedsValue(flag.clone()))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--" => {
                let rest: Vec<String> = args.by_ref().collect();
                cli.steps.push(Box::new(move |b| b.args(rest)));
            }
            "--tag" => cli.tag = Some(value()?),
            "-o" | "--output" => cli.output = Some(PathBuf::from(value()?)),
            "--import-containerd" => cli.socket = Some(PathBuf::from(value()?)),
            "--namespace" => cli.namespace = Some(value()?),
            "--kind-load" => cli.kind = Some(value()?),
            "--lib-from-ldd" => cli
                .steps
                .push(Box::new(|b| b.libraries(Libraries::FromLdd))),
            "--static" => cli.steps.push(Box::new(|b| b.libraries(Libraries::Static))),
            _ if flag.starts_with('-') => {
                let step = builder_option(&flag, &mut value)?;
                cli.steps.push(step);
            }
            _ if cli.binary.is_some() => return Err(UsageError::SecondBinary(arg)),
            _ => cli.binary = Some(PathBuf::from(arg)),
        }
    }
    cli.finish().map(Some)
}

/// An option that takes a value and maps to one builder call.
fn builder_option(
    flag: &str,
    value: &mut dyn FnMut() -> Result<String, UsageError>,
) -> Result<Step, UsageError> {
    Ok(match flag {
        "--dest" => {
            let dest = value()?;
            Box::new(move |b| b.binary_dest(dest))
        }
        "--file" => {
            let v = value()?;
            let split = v
                .rsplit_once(':')
                .filter(|(s, d)| !s.is_empty() && d.starts_with('/'));
            let (src, dest) =
                split.ok_or_else(|| bad(flag, &v, "SRC:DEST with an absolute DEST"))?;
            let (src, dest) = (PathBuf::from(src), dest.to_owned());
            Box::new(move |b| b.file(src, dest))
        }
        "--dir" => {
            let v = value()?;
            let (path, mode) = match v.rsplit_once(':') {
                Some((path, mode)) => {
                    let mode = u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777);
                    let expected = "PATH[:MODE] with an octal MODE such as 1777";
                    (
                        path.to_owned(),
                        mode.ok_or_else(|| bad(flag, &v, expected))?,
                    )
                }
                None => (v, 0o755),
            };
            Box::new(move |b| b.dir(path, mode))
        }
        "--user" => {
            let user = value()?;
            Box::new(move |b| b.user(user))
        }
        "--workdir" => {
            let dir = value()?;
            Box::new(move |b| b.workdir(dir))
        }
        "--env" | "--label" => {
            let v = value()?;
            let (key, val) = v
                .split_once('=')
                .ok_or_else(|| bad(flag, &v, "KEY=VALUE"))?;
            let (key, val) = (key.to_owned(), val.to_owned());
            if flag == "--env" {
                Box::new(move |b| b.env(key, val))
            } else {
                Box::new(move |b| b.label(key, val))
            }
        }
        "--platform" => {
            let v = value()?;
            let expected = "OS/ARCH[/VARIANT], e.g. linux/arm64";
            let platform: Platform = v.parse().map_err(|_| bad(flag, &v, expected))?;
            Box::new(move |b| b.platform(platform))
        }
        _ => return Err(UsageError::Unknown(flag.to_owned())),
    })
}

impl Cli {
    fn finish(self) -> Result<(ImageBuilder, PathBuf, After), UsageError> {
        let binary = self
            .binary
            .ok_or(UsageError::Missing("the <binary> argument"))?;
        let tag = self.tag.ok_or(UsageError::Missing("--tag <name:tag>"))?;
        let output = self.output.ok_or(UsageError::Missing("-o <archive.tar>"))?;
        let containerd = match (self.socket, self.namespace) {
            (Some(socket), namespace) => {
                Some((socket, namespace.unwrap_or_else(|| "k8s.io".into())))
            }
            (None, Some(_)) => {
                let what = "--import-containerd <socket> (--namespace applies to it)";
                return Err(UsageError::Missing(what));
            }
            (None, None) => None,
        };
        let start = ImageBuilder::new(tag).entrypoint_binary(binary);
        let builder = self.steps.into_iter().fold(start, |b, step| step(b));
        Ok((
            builder,
            output,
            After {
                containerd,
                kind: self.kind,
            },
        ))
    }
}

fn bad(flag: &str, value: &str, expected: &'static str) -> UsageError {
    UsageError::BadValue {
        flag: flag.to_owned(),
        value: value.to_owned(),
        expected,
    }
}
