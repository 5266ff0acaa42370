//! One timer for a loop's next deadline, moved only earlier (see [`DeadlineTimer`]).

use std::time::{Duration, Instant};

/// An instance's one timer for its deadlines (init, invocation timeout, stop grace), and a
/// function's for reaping its idle instances.
///
/// Registering a timer earlier than every other one wakes the runtime's driver (a system call
/// and an extra turn of the event loop), and each invocation sets a new deadline a timeout
/// later than the last. So the timer is only ever moved earlier: when it fires before the
/// deadline it stands for (that deadline was cleared or replaced by a later one), it is re-armed
/// for the current one. Sequential invocations re-arm it about once per timeout, not once each.
pub struct DeadlineTimer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl DeadlineTimer {
    pub fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(86_400))),
            armed: None,
        }
    }

    /// Completes once `deadline` has passed; never when it is `None`.
    pub async fn wait(&mut self, deadline: Option<Instant>) {
        let Some(deadline) = deadline else {
            return std::future::pending().await;
        };
        loop {
            if self.armed.is_none_or(|armed| armed > deadline) {
                self.sleep.as_mut().reset(deadline.into());
                self.armed = Some(deadline);
            }
            self.sleep.as_mut().await;
            self.armed = None;
            if Instant::now() >= deadline {
                return;
            }
        }
    }
}
