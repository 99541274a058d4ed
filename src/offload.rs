//! Blocking work (file system calls, fsync, password hashing) run off the async
//! executor on smol's thread pool, through one instantiation of that pool's task.
//!
//! `smol::unblock` builds a task type per closure type: its poll, wake, drop and
//! schedule functions, about 2 KB of code each on mipsel, for each of the twenty-odd
//! places that use it. Here every call goes through one: the closure is boxed and its
//! result comes back as `Box<dyn Any>`, to be unboxed as the type it was. One small
//! allocation per call buys it, next to the thread hand-off that costs far more.

use std::any::Any;

/// A closure with its result type erased: what the one pool task runs.
type Job = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// Runs `work` on the blocking thread pool and returns what it returned.
pub async fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let job: Job = Box::new(move || Box::new(work()) as Box<dyn Any + Send>);
    let done = smol::unblock(job).await;
    match done.downcast::<T>() {
        Ok(out) => *out,
        // The job above boxed a T, and nothing else reaches here.
        Err(_) => unreachable!("offload: a job's result has the job's own type"),
    }
}

/// Runs `work` on the blocking thread pool without waiting for it.
pub fn detach(work: impl FnOnce() + Send + 'static) {
    let job: Job = Box::new(move || {
        work();
        Box::new(()) as Box<dyn Any + Send>
    });
    smol::unblock(job).detach();
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
}
