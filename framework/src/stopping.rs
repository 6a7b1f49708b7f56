//! The stop signal of daemons and timers (Kopf's `stopped` kwarg): a flag
//! they can poll, await, or sleep on, with the reason it was raised.
//!
//! Sleeping and waiting through the signal also tells whoever watches the
//! operator (a test harness) that the daemon is parked, and until when, so
//! that a parked daemon does not count as busy.

use std::{fmt, sync::Arc, time::Duration};

use tokio::{sync::watch, time::Instant};

/// Why a daemon or timer is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The object is being deleted (its finalizer waits for the daemon).
    Deletion,
    /// The object no longer passes the handler's filters.
    FiltersMismatch,
    /// The object is gone.
    ObjectGone,
    /// The operator is exiting.
    OperatorExiting,
    /// The operator pauses (peering): restarted when it resumes.
    OperatorPausing,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Deletion => "the object is being deleted",
            StopReason::FiltersMismatch => "the filters do not match anymore",
            StopReason::ObjectGone => "the object is gone",
            StopReason::OperatorExiting => "the operator is exiting",
            StopReason::OperatorPausing => "the operator is pausing",
        })
    }
}

/// Reports parking: `Some(wake)` when entering a wait (`wake` = `None` for
/// an unbounded one), `None` when leaving it.
pub(crate) type ParkHook = Arc<dyn Fn(Option<Option<Instant>>) + Send + Sync>;

/// A daemon's (or timer's) stop signal. Other handlers get one that is
/// never raised.
#[derive(Clone, Default)]
pub struct Stopped {
    rx: Option<watch::Receiver<Option<StopReason>>>,
    park: Option<ParkHook>,
    gate: Option<Gate>,
    /// The operator runs on a (possibly paused) virtual clock: a blocking
    /// daemon's thread must hold the clock while it runs code.
    virtual_time: bool,
}

/// Keeps a blocking daemon's thread and the runtime's (possibly paused)
/// clock in step: while the thread runs code, the runtime is kept busy so
/// that paused time cannot jump ahead; while the thread waits on the stop
/// signal, the wait is a task of the runtime, and time moves as usual.
#[derive(Clone)]
pub(crate) struct Gate(Arc<GateInner>);

struct GateInner {
    /// Waits of the thread in progress (counted from inside the runtime).
    parked: std::sync::atomic::AtomicUsize,
    notify: tokio::sync::Notify,
    handle: tokio::runtime::Handle,
}

impl Gate {
    /// A gate for the current runtime.
    pub(crate) fn current() -> Self {
        Gate(Arc::new(GateInner {
            parked: Default::default(),
            notify: tokio::sync::Notify::new(),
            handle: tokio::runtime::Handle::current(),
        }))
    }

    /// The runtime side: returns soon; pending (without spinning) while the
    /// thread waits on the signal, ready at once (a busy runtime) while it
    /// runs code.
    pub(crate) async fn tick(&self) {
        if self.0.parked.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            self.0.notify.notified().await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

impl fmt::Debug for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopped")
            .field("reason", &self.reason())
            .finish()
    }
}

/// Raises a [`Stopped`] signal.
pub(crate) struct Stopper(watch::Sender<Option<StopReason>>);

impl Stopper {
    /// Raises the signal (the first reason sticks).
    pub(crate) fn stop(&self, reason: StopReason) {
        self.0.send_if_modified(|r| {
            let first = r.is_none();
            if first {
                *r = Some(reason);
            }
            first
        });
    }
}

/// A connected pair: the signal for the daemon, the stopper for its owner.
pub(crate) fn signal(park: Option<ParkHook>) -> (Stopped, Stopper) {
    let (tx, rx) = watch::channel(None);
    (
        Stopped {
            rx: Some(rx),
            park,
            gate: None,
            virtual_time: false,
        },
        Stopper(tx),
    )
}

/// Marks a wait as parked for as long as it lives.
struct Parked<'a>(&'a Option<ParkHook>);

impl<'a> Parked<'a> {
    fn new(hook: &'a Option<ParkHook>, until: Option<Instant>) -> Self {
        if let Some(h) = hook {
            h(Some(until));
        }
        Parked(hook)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.0 {
            h(None);
        }
    }
}

impl Stopped {
    /// The same signal, marked as running on virtual time (or not).
    pub(crate) fn on_virtual_time(mut self, virtual_time: bool) -> Self {
        self.virtual_time = virtual_time;
        self
    }

    /// Whether the operator runs on a virtual clock.
    pub(crate) fn is_virtual_time(&self) -> bool {
        self.virtual_time
    }

    /// The same signal, for a blocking daemon's thread behind `gate`.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// For blocking daemons (on their own thread): sleeps for `duration` or
    /// until the stop is requested; returns whether it was (Kopf's sync
    /// `stopped.wait(timeout)`). The wait runs in the runtime's time, so
    /// it is virtual under a paused clock. Outside a blocking daemon it
    /// sleeps on the wall clock.
    pub fn wait_blocking(&self, duration: Duration) -> bool {
        let Some(gate) = self.gate.clone() else {
            std::thread::sleep(duration);
            return self.is_set();
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let stopped = self.clone();
        let handle = gate.0.handle.clone();
        handle.spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            // Counted from inside the runtime, in the same poll that starts
            // the timer: the runtime never idles before the wait is set.
            gate.0.parked.fetch_add(1, SeqCst);
            let stop = stopped.sleep(duration).await;
            gate.0.parked.fetch_sub(1, SeqCst);
            gate.0.notify.notify_one();
            let _ = tx.send(stop);
        });
        rx.recv().unwrap_or(true)
    }

    /// Whether the stop was requested.
    pub fn is_set(&self) -> bool {
        self.reason().is_some()
    }

    /// Why the stop was requested, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.rx.as_ref().and_then(|rx| *rx.borrow())
    }

    pub(crate) async fn raised(&self) {
        match &self.rx {
            Some(rx) => {
                let mut rx = rx.clone();
                // An error means the owner is gone: treat as never raised.
                if rx.wait_for(Option::is_some).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Waits until the stop is requested.
    pub async fn wait(&self) -> StopReason {
        let _parked = Parked::new(&self.park, None);
        self.raised().await;
        self.reason().unwrap_or(StopReason::OperatorExiting)
    }

    /// Sleeps for `duration` or until the stop is requested, whichever
    /// comes first; returns whether the stop was requested (Kopf's
    /// `stopped.wait(timeout)`): `while !ctx.stopped.sleep(d).await { ... }`.
    pub async fn sleep(&self, duration: Duration) -> bool {
        if self.is_set() {
            return true;
        }
        let Some(until) = Instant::now().checked_add(duration) else {
            // Longer than the clock can count: until stopped.
            return {
                self.wait().await;
                true
            };
        };
        let _parked = Parked::new(&self.park, Some(until));
        tokio::select! {
            _ = self.raised() => true,
            _ = tokio::time::sleep_until(until) => self.is_set(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(start_paused = true)]
    async fn sleeping_should_end_early_when_stopped() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let hook: ParkHook = Arc::new(move |p| l.lock().unwrap().push(p.is_some()));
        let (stopped, stopper) = signal(Some(hook));
        assert!(!stopped.is_set());
        let start = Instant::now();
        assert!(!stopped.sleep(Duration::from_secs(5)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let waiter = tokio::spawn({
            let stopped = stopped.clone();
            async move { stopped.sleep(Duration::from_secs(60)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        stopper.stop(StopReason::Deletion);
        stopper.stop(StopReason::OperatorExiting);
        assert!(waiter.await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        assert_eq!(
            stopped.reason(),
            Some(StopReason::Deletion),
            "the first reason sticks"
        );
        assert_eq!(stopped.wait().await, StopReason::Deletion);
        assert_eq!(
            *log.lock().unwrap(),
            vec![true, false, true, false, true, false],
            "every wait parks and unparks"
        );
        assert!(!Stopped::default().is_set());
    }
}
