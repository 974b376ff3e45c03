//! `rlock-top`: a live terminal view of rlock's hottest locks, waits and lock log, for one
//! node or every master of a cluster (found from the seed's `CLUSTER NODES`), refreshed every
//! second. Read-only: it sends `INFO lock`, `LOCK.TOP`, `LOCK.LOG GET` (and `INFO cluster`,
//! `CLUSTER NODES`). Keys: `q` (or Esc, Ctrl-C) quits, `p` pauses and resumes.

mod fetch;
mod model;
mod view;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

#[derive(Parser, Debug)]
#[command(
    name = "rlock-top",
    about = "Live view of rlock's hottest locks, waits and lock log"
)]
struct Args {
    /// The node to read (`redis://[:password@]host:port[/db]`); in a cluster, every master.
    #[arg(default_value = "redis://127.0.0.1:6379/")]
    url: String,
    /// Refresh period in ms.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Hottest locks asked of each node.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Lock log entries asked of each node.
    #[arg(long, default_value_t = 30)]
    log: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// What a key press asks for.
enum Action {
    Quit,
    TogglePause,
    Nothing,
}

fn action(key: event::KeyEvent) -> Action {
    if key.kind != KeyEventKind::Press {
        return Action::Nothing;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('p') => Action::TogglePause,
        _ => Action::Nothing,
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut fetcher = match fetch::Fetcher::new(&args.url, args.top, args.log) {
        Ok(fetcher) => fetcher,
        Err(error) => {
            eprintln!("rlock-top: {}: {error}", args.url);
            std::process::exit(2);
        }
    };
    let interval = Duration::from_millis(args.interval_ms.max(100));
    let mut terminal = ratatui::init();
    let mut status = view::Status::default();
    let mut nodes = Vec::new();
    let mut next_refresh = Instant::now();
    let outcome = loop {
        if !status.paused && Instant::now() >= next_refresh {
            nodes = fetcher.fetch();
            status.refreshed = view::clock(now_ms());
            next_refresh = Instant::now() + interval;
        }
        if let Err(error) = terminal.draw(|frame| view::draw(frame, &nodes, &status)) {
            break Err(error);
        }
        let wait = next_refresh.saturating_duration_since(Instant::now());
        match event::poll(wait.max(Duration::from_millis(50))) {
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) => match action(key) {
                    Action::Quit => break Ok(()),
                    Action::TogglePause => status.paused = !status.paused,
                    Action::Nothing => {}
                },
                Ok(_) => {}
                Err(error) => break Err(error),
            },
            Ok(false) => {}
            Err(error) => break Err(error),
        }
    };
    ratatui::restore();
    outcome
}
