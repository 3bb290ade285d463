//! [`ConnectionTimer`]: the timer hyper uses for one connection's header-read timeout, which
//! touches tokio's timer wheel about once per timeout period instead of twice per request.
//!
//! hyper starts a fresh sleep each time it waits for a request head (deadline: now + the
//! header-read timeout) and drops it when the head has arrived. With `hyper_util`'s
//! `TokioTimer` every request therefore registers an entry in tokio's timer wheel and removes
//! it again, and a registration earlier than the wheel's next expiry wakes a parked worker
//! thread to re-arm it. Measured in `cargo xtask bench http`, that was a tenth or more of
//! kms's server CPU per request at 8 connections (`docs/performance.md`).
//!
//! Here all of one connection's sleeps share one tokio timer. A new sleep whose deadline is
//! not earlier than the armed one leaves it alone; when the armed timer goes off before the
//! waiting sleep's deadline (an older request's deadline), it is moved to that deadline, once.
//! The semantics are hyper's: a sleep completes at its deadline, never before and never more
//! than the timer's granularity after. The price is at most one spurious wake-up of an idle
//! connection's task per timeout period.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// The armed tokio timer of one connection, created by its first sleep.
type SharedTimer = Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>;

/// A [`Timer`] for one connection (hyper's `http1::Builder` is built per connection).
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnectionTimer {
    armed: SharedTimer,
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(SharedSleep { deadline: deadline.into(), armed: self.armed.clone() })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        if let Some(mut sleep) = sleep.as_mut().downcast_mut_pin::<SharedSleep>() {
            sleep.deadline = new_deadline.into();
        }
    }

    fn now(&self) -> Instant {
        // tokio's clock, so that a paused test clock governs these sleeps as it does tokio's.
        tokio::time::Instant::now().into()
    }
}

/// One of hyper's sleeps: done once the connection's timer has gone off at its deadline.
struct SharedSleep {
    deadline: tokio::time::Instant,
    armed: SharedTimer,
}

impl Sleep for SharedSleep {}

impl Future for SharedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let timer = armed.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        loop {
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // The timer went off at or before this deadline (never after: see above).
                Poll::Ready(()) if timer.deadline() >= deadline => return Poll::Ready(()),
                // It went off for an earlier sleep: wait on for this one.
                Poll::Ready(()) => timer.as_mut().reset(deadline),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn finished(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_its_deadline_not_before() {
        let timer = ConnectionTimer::default();
        let mut sleep = timer.sleep(Duration::from_secs(10));
        assert!(!finished(&mut sleep).await);
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!finished(&mut sleep).await);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(finished(&mut sleep).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_sleep_outlives_the_earlier_deadline_it_shares_a_timer_with() {
        let timer = ConnectionTimer::default();
        let mut first = timer.sleep(Duration::from_secs(10));
        assert!(!finished(&mut first).await);
        drop(first);
        tokio::time::advance(Duration::from_secs(4)).await;
        // The armed timer still says t=10; this sleep's deadline is t=14.
        let mut second = timer.sleep(Duration::from_secs(10));
        assert!(!finished(&mut second).await);
        tokio::time::advance(Duration::from_secs(7)).await; // t=11: the shared timer went off
        assert!(!finished(&mut second).await);
        tokio::time::advance(Duration::from_millis(2_999)).await;
        assert!(!finished(&mut second).await);
        tokio::time::advance(Duration::from_millis(1)).await; // t=14
        assert!(finished(&mut second).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_shared_timer_forward() {
        let timer = ConnectionTimer::default();
        let mut long = timer.sleep(Duration::from_secs(60));
        assert!(!finished(&mut long).await);
        drop(long);
        let mut short = timer.sleep(Duration::from_secs(1));
        assert!(!finished(&mut short).await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(finished(&mut short).await);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_sleeps_deadline_both_ways() {
        let timer = ConnectionTimer::default();
        let mut sleep = timer.sleep(Duration::from_secs(5));
        assert!(!finished(&mut sleep).await);
        timer.reset(&mut sleep, timer.now() + Duration::from_secs(8));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!finished(&mut sleep).await);
        timer.reset(&mut sleep, timer.now() + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(finished(&mut sleep).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_sleep_is_woken_at_its_deadline() {
        let timer = ConnectionTimer::default();
        let started = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(3)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // And again after the shared timer went off for the first one.
        let again = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(2)).await;
        assert_eq!(again.elapsed(), Duration::from_secs(2));
    }
}
