//! [`Deadline`]: one start's `start_timeout`, shared by its steps, so a timeout reports
//! the time really waited and a later step gets only what is left.

use std::time::{Duration, Instant};

use crate::client::ClientError;

/// The start's deadline: what remains of `start_timeout`, and the error when it passed
/// (with the real time waited).
pub(super) struct Deadline {
    name: String,
    pub(super) started: Instant,
    at: Instant,
}

impl Deadline {
    pub(super) fn new(name: &str, start_timeout: Duration) -> Self {
        let started = Instant::now();
        Deadline {
            name: name.to_owned(),
            started,
            at: started + start_timeout,
        }
    }

    pub(super) fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub(super) fn passed(&self, step: &'static str, stderr: String) -> ClientError {
        ClientError::StartTimeout {
            name: self.name.clone(),
            waited: self.started.elapsed(),
            step,
            stderr,
        }
    }
}
