//! The test harness itself (tests/common): a connection reaches its own server and no other,
//! and servers and temp dirs do not outlive a test process that is killed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// Set for the child process of `servers_die_with_a_killed_test_process...`.
const CHILD_ENV: &str = "RLOCK_HARNESS_KILL_CHILD";

#[test]
fn every_connection_reaches_its_own_server() {
    let a = Server::start();
    let b = Server::start();
    for server in [&a, &b] {
        let pid = server.pid().expect("running").to_string();
        let mut unix = server.conn();
        assert_eq!(
            info_field(&mut unix, "server", "process_id"),
            Some(pid.clone())
        );
        let mut tcp = server.tcp_conn();
        assert_eq!(info_field(&mut tcp, "server", "process_id"), Some(pid));
    }
    // A restarted server is a new process, still reached through the same guard.
    let mut a = a;
    let before = a.pid();
    a.restart();
    assert_ne!(a.pid(), before);
    let mut con = a.conn();
    assert_eq!(
        info_field(&mut con, "server", "process_id"),
        a.pid().map(|pid| pid.to_string())
    );
}

/// Not a test on its own: the child process of the next test (it does nothing without
/// `RLOCK_HARNESS_KILL_CHILD`). It starts a server, says where, and waits to be killed.
#[test]
#[ignore = "run as a child process by servers_die_with_a_killed_test_process"]
fn child_process_holding_a_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let server = Server::start();
    println!(
        "SERVER {} {}",
        server.pid().expect("running"),
        server.dir().display()
    );
    // Bounded: the parent kills this process long before.
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn servers_die_with_a_killed_test_process_and_its_temp_dirs_are_removed_later() {
    // The child's temp dirs go under a root of this test's own: test processes running beside
    // this one (cargo-nextest) sweep the system's temp dir, and would remove the killed child's
    // dir before this test looks. Named after this process, so a later one sweeps it if this
    // one is killed.
    let root = std::env::temp_dir().join(format!("rlock-test-{}-h", std::process::id()));
    std::fs::create_dir_all(&root).expect("the child's temp root");
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .env("TMPDIR", &root)
        .args([
            "--exact",
            "child_process_holding_a_server",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = spawn_tied_to_this_process(command).expect("start the child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print the test's name on the same line first.
            if let Some((_, rest)) = line.split_once("SERVER ") {
                let _ = send.send(rest.to_string());
                return;
            }
        }
    });
    let line = receive
        .recv_timeout(Duration::from_secs(30))
        .expect("the child started no server");
    let (pid, dir) = line.split_once(' ').expect("SERVER pid dir");
    let pid: u32 = pid.parse().expect("pid");
    let dir = std::path::PathBuf::from(dir);
    assert!(process_alive(pid), "the child's server runs");
    assert!(dir.is_dir(), "the child's temp dir exists");

    // SIGKILL: no destructor runs in the child.
    child.kill().expect("kill the child test process");
    child.wait().expect("reap the child");
    wait_until("the killed process' server to die with it", || {
        !process_alive(pid)
    });
    assert!(
        dir.is_dir(),
        "nothing could remove the dir of a killed process"
    );
    remove_stale_temp_dirs_in(&root);
    assert!(
        !dir.exists(),
        "the stale temp dir {} is removed",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&root);
}
