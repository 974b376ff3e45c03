//! Child processes tied to the test process: a server dies with the test process however it
//! dies (SIGKILL as the parent-death signal, armed from one thread that lives as long as the
//! process), is stopped by its own pid, and is waited for with a bound.

use std::fs;
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

extern "C" {
    fn prctl(option: i32, ...) -> i32;
    fn getppid() -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
}

/// SIGTERM to our own child, by its pid (it has not been reaped, so the pid is still ours).
pub(super) fn terminate(child: &Child) {
    // SAFETY: kill(2) on the pid of a child we have not waited for yet.
    unsafe { kill(child.id() as i32, SIGTERM) };
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<std::io::Result<Child>>,
}

/// Starts `command` so that it gets SIGKILL when this test process dies, however it dies.
///
/// The parent-death signal fires when the *thread* that forked the child exits, and cargo test
/// runs every test on a thread of its own that ends with the test: so every server is forked
/// by one spawner thread that lives as long as the process (it waits on a channel that is never
/// closed). A child whose parent died before the signal was armed exits at once.
pub fn spawn_tied_to_this_process(mut command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if prctl(PR_SET_PDEATHSIG, SIGKILL as std::ffi::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if getppid() != parent {
                return Err(std::io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("rlock-test-spawner".into())
            .spawn(move || {
                for SpawnRequest { mut command, reply } in receive {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(send)
    });
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(SpawnRequest { command, reply })
        .expect("the spawner thread is gone");
    result.recv().expect("the spawner thread is gone")
}

pub(super) fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

/// Whether `pid` names a live process (not a zombie waiting to be reaped).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
