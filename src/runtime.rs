//! How the daemon runs its work: tasks on the executor of its one thread, and
//! blocking work (file system calls, fsync, password hashing) on smol's thread pool,
//! each through one instantiation of the task machinery.
//!
//! `smol::unblock` and `LocalExecutor::spawn` build a task type per closure or future
//! type: its run, wake, drop and schedule functions, 1–2 KB of code each on mipsel,
//! for each of the thirty-odd places that use them. Here every call goes through one
//! of two: the closure or future is boxed, and a blocking closure's result comes back
//! as `Box<dyn Any>`, to be unboxed as the type it was. One small allocation per call
//! buys it, next to a thread hand-off or a task that costs more.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use smol::LocalExecutor;

/// A closure with its result type erased: what the one pool task runs.
type Job = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// Runs `work` on the blocking thread pool and returns what it returned.
pub async fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let job: Job = Box::new(move || Box::new(work()) as Box<dyn Any + Send>);
    let done = smol::unblock(job).await;
    match done.downcast::<T>() {
        Ok(out) => *out,
        // The job above boxed a T, and nothing else reaches here.
        Err(_) => unreachable!("runtime: a job's result has the job's own type"),
    }
}

/// Runs `work` on the blocking thread pool without waiting for it.
pub fn unblock_detached(work: impl FnOnce() + Send + 'static) {
    let job: Job = Box::new(move || {
        work();
        Box::new(()) as Box<dyn Any + Send>
    });
    smol::unblock(job).detach();
}

/// Runs `task` to its end on this thread (`smol::block_on`), through one copy of
/// smol's polling loop: the future is polled as a `dyn Future`, its output handed
/// back through a local. `smol::block_on` itself is generic over the future, and
/// each caller had the whole loop (parker, reactor, waker cache) inlined.
pub fn block_on<T>(task: impl Future<Output = T>) -> T {
    let mut out = None;
    {
        let whole = std::pin::pin!(async {
            out = Some(task.await);
        });
        poll_to_end(whole);
    }
    match out {
        Some(out) => out,
        // `poll_to_end` returns only once the future above has finished.
        None => unreachable!("runtime: block_on returned before its future finished"),
    }
}

/// The one instantiation of smol's loop.
fn poll_to_end(task: Pin<&mut dyn Future<Output = ()>>) {
    smol::block_on(task)
}

/// Spawns `task` on `ex` and lets it run to its end on its own (the daemon's tasks
/// report through channels, nobody awaits them).
pub fn spawn_detached<'a>(ex: &LocalExecutor<'a>, task: impl Future<Output = ()> + 'a) {
    let task: Pin<Box<dyn Future<Output = ()> + 'a>> = Box::pin(task);
    ex.spawn(task).detach();
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_as_their_own_types() {
        let n = smol::block_on(super::unblock(|| 6 * 7));
        assert_eq!(n, 42);
        let r: Result<String, std::io::Error> =
            smol::block_on(super::unblock(|| std::fs::read_to_string("/nonexistent/x")));
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::NotFound);
        let thread = smol::block_on(super::unblock(|| std::thread::current().id()));
        assert_ne!(thread, std::thread::current().id(), "ran on a pool thread");
    }

    #[test]
    fn block_on_returns_what_the_future_returned() {
        let s = super::block_on(async {
            smol::Timer::after(std::time::Duration::from_millis(5)).await;
            super::unblock(|| "from the pool".to_string()).await
        });
        assert_eq!(s, "from the pool");
        let ex = smol::LocalExecutor::new();
        assert_eq!(super::block_on(ex.run(async { 7 })), 7);
    }

    #[test]
    fn detached_tasks_run_to_their_end() {
        use smol::stream::StreamExt;
        let ex = smol::LocalExecutor::new();
        let (tx, rx) = smol::channel::unbounded();
        for i in 0..3 {
            let tx = tx.clone();
            super::spawn_detached(&ex, async move {
                smol::Timer::after(std::time::Duration::from_millis(10)).await;
                tx.send(i).await.unwrap();
            });
        }
        drop(tx);
        let mut got: Vec<i32> = smol::block_on(ex.run(async { rx.collect().await }));
        got.sort();
        assert_eq!(got, [0, 1, 2]);
    }
}
