//! What the recording doubles of the syscall traits share (unit tests only): the log of calls
//! with their outcomes, the faults a test asks for, and descriptors that stand for objects.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

type Matcher<C> = Box<dyn Fn(&C) -> bool>;

/// Every call a double received, with its outcome, and the faults it injects.
pub struct Recorder<C, E> {
    log: Vec<(C, Result<(), E>)>,
    faults: Vec<(Matcher<C>, E)>,
}

impl<C, E> Default for Recorder<C, E> {
    fn default() -> Self {
        Recorder {
            log: Vec::new(),
            faults: Vec::new(),
        }
    }
}

impl<C: Clone, E: Copy> Recorder<C, E> {
    /// Every call `when` matches fails with `errno`, and `op` is not run for it.
    pub fn fail(&mut self, errno: E, when: impl Fn(&C) -> bool + 'static) {
        self.faults.push((Box::new(when), errno));
    }

    /// Record `call` with its outcome: the errno of the first fault that matches it, else
    /// what `op` returns.
    pub fn run<T>(&mut self, call: C, op: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let fault = self.faults.iter().find(|(m, _)| m(&call)).map(|(_, e)| *e);
        let result = match fault {
            Some(e) => Err(e),
            None => op(),
        };
        self.log
            .push((call, result.as_ref().map(|_| ()).map_err(|e| *e)));
        result
    }

    /// Every call, in order, failed ones included.
    pub fn calls(&self) -> Vec<C> {
        self.log.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Every call with its outcome.
    pub fn log(&self) -> Vec<(C, Result<(), E>)> {
        self.log.clone()
    }
}

/// Descriptors handed out by a double, each standing for an object of its model. They are real
/// descriptors of anonymous temporary files, so that their numbers are unique while open and
/// nothing done to them by mistake reaches a real object.
pub struct Handles<T> {
    objects: RefCell<HashMap<RawFd, T>>,
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles {
            objects: RefCell::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Handles<T> {
    /// A new descriptor for `object`.
    pub fn hand_out(&self, object: T) -> OwnedFd {
        let fd = OwnedFd::from(tempfile::tempfile().expect("an anonymous temporary file"));
        self.objects.borrow_mut().insert(fd.as_raw_fd(), object);
        fd
    }

    /// The object `fd` stands for.
    pub fn get(&self, fd: BorrowedFd<'_>) -> T {
        self.objects
            .borrow()
            .get(&fd.as_raw_fd())
            .cloned()
            .expect("an fd the double handed out")
    }
}
