//! A future run where it is awaited that, dropped unfinished, finishes in a task of its own.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs a future where it is awaited, with no hand-over to another task, and
/// if it is dropped before it finished (the client disconnected, a timeout
/// fired) spawns the rest of it, so that it still runs to its end.
///
/// The exchange needs this: cancelled half way, a minted token would be
/// neither audited nor revoked. Spawning it as a task of its own from the
/// start gives the same guarantee, but costs a task hand-over and a wake-up
/// of the waiting request on every exchange, which at low load also woke a
/// second tokio worker.
///
/// A panic inside the future is caught and answered as [`Panicked`], as a
/// task's would be, and the future is never polled again. Polled again after
/// it answered, it stays pending.
pub(crate) struct FinishOnDrop<T: 'static> {
    /// `None` once it has finished.
    rest: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
}

/// The future panicked; the panic was caught. Holds the panic's message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Panicked(pub(crate) String);

impl<T: 'static> FinishOnDrop<T> {
    pub(crate) fn new(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            rest: Some(Box::pin(future)),
        }
    }
}

impl<T: 'static> Future for FinishOnDrop<T> {
    type Output = Result<T, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(rest) = self.rest.as_mut() else {
            // Polled again after it finished: there is nothing left to give.
            return Poll::Pending;
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| rest.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                self.rest = None;
                Poll::Ready(Ok(out))
            }
            Err(payload) => {
                // A future that panicked must not be polled again; dropping
                // it may panic too.
                let rest = self.rest.take();
                drop(std::panic::catch_unwind(AssertUnwindSafe(|| drop(rest))));
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Poll::Ready(Err(Panicked(message)))
            }
        }
    }
}

impl<T: 'static> Drop for FinishOnDrop<T> {
    fn drop(&mut self) {
        let Some(rest) = self.rest.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move {
                drop(rest.await);
            })),
            Err(_) => {
                tracing::error!(
                    "an unfinished exchange was dropped outside the runtime; it cannot finish"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Counts to `done` after `delay`.
    fn slow(done: &Arc<AtomicU32>, delay: Duration) -> FinishOnDrop<u32> {
        let done = Arc::clone(done);
        FinishOnDrop::new(async move {
            tokio::time::sleep(delay).await;
            done.fetch_add(1, Ordering::SeqCst) + 1
        })
    }

    #[tokio::test]
    async fn a_finished_future_answers_once_and_leaves_nothing_behind() {
        let done = Arc::new(AtomicU32::new(0));
        assert_eq!(slow(&done, Duration::ZERO).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn dropped_unfinished_it_runs_to_its_end_in_a_task() {
        let done = Arc::new(AtomicU32::new(0));
        let cut = tokio::time::timeout(
            Duration::from_millis(20),
            slow(&done, Duration::from_millis(100)),
        )
        .await;
        assert!(cut.is_err(), "the timeout should have dropped it");
        assert_eq!(done.load(Ordering::SeqCst), 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped future never finished"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panic_is_answered_and_the_future_never_polled_again() {
        let polls = Arc::new(AtomicU32::new(0));
        let mut boom = FinishOnDrop::new({
            let polls = Arc::clone(&polls);
            async move {
                polls.fetch_add(1, Ordering::SeqCst);
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                1u8
            }
        });
        assert_eq!((&mut boom).await, Err(Panicked("boom".to_owned())));
        let again = tokio::time::timeout(Duration::from_millis(20), &mut boom).await;
        assert!(again.is_err(), "answered twice: {again:?}");
        drop(boom);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }
}
