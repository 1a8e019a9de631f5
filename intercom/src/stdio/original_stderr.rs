//! [`OriginalStderr`]: a writer to the stderr the process had before the capture.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

/// A writer to the stderr the process had before [`StdioCapture::install`].
///
/// Each [`Write::write`] is a single `write(2)` on a duplicate of that descriptor, so a
/// log line up to `PIPE_BUF` (4 KiB on Linux) written with `write_all` is never
/// interleaved with other writers. Cheap to clone; usable as a
/// [`tracing_subscriber::fmt::MakeWriter`].
///
/// [`StdioCapture::install`]: super::StdioCapture::install
#[derive(Debug, Clone)]
pub(crate) struct OriginalStderr {
    pub(super) file: Arc<File>,
}

impl Write for OriginalStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.file).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OriginalStderr {
    type Writer = OriginalStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
