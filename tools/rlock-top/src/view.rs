//! The screen: a line per node (held, waiting, p99s), the hottest locks of every node merged
//! by weight, and the lock log of every node merged newest first. Pure: draws what it is given,
//! so tests render it on ratatui's TestBackend.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use crate::model::NodeView;

/// What the screen shows besides the nodes.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// "HH:MM:SS" (UTC) of the last refresh.
    pub refreshed: String,
    pub paused: bool,
}

fn ms(value: u64) -> String {
    if value >= 10_000 {
        format!("{:.1}s", value as f64 / 1000.0)
    } else {
        format!("{value}ms")
    }
}

fn micros(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(us) if us >= 1000.0 => ms((us / 1000.0) as u64),
        Some(us) => format!("{us:.0}us"),
    }
}

/// "HH:MM:SS" of a unix ms time (UTC).
pub fn clock(unix_ms: i64) -> String {
    let seconds = unix_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

pub fn draw(frame: &mut Frame, nodes: &[NodeView], status: &Status) {
    let [header, node_area, top_area, log_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(nodes.len().clamp(1, 8) as u16 + 3),
        Constraint::Percentage(45),
        Constraint::Min(5),
    ])
    .areas(frame.area());
    let title = format!(
        "rlock top  {} node{}  refreshed {} UTC{}  (q quit, p pause)",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        status.refreshed,
        if status.paused { "  PAUSED" } else { "" }
    );
    frame.render_widget(
        Paragraph::new(Line::from(title)).style(Style::new().add_modifier(Modifier::BOLD)),
        header,
    );
    frame.render_widget(node_table(nodes), node_area);
    frame.render_widget(top_table(nodes), top_area);
    frame.render_widget(log_table(nodes), log_area);
}

fn bold_header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(Style::new().add_modifier(Modifier::BOLD))
}

fn node_table(nodes: &[NodeView]) -> Table<'static> {
    let rows = nodes.iter().map(|node| match &node.error {
        Some(error) => {
            let mut cells = vec![node.addr.clone()];
            cells.extend(std::iter::repeat_n("-".to_string(), 5));
            cells.push(format!("unreachable: {error}"));
            Row::new(cells)
        }
        None => Row::new(vec![
            node.addr.clone(),
            node.stats.held.to_string(),
            node.stats.waiters.to_string(),
            node.stats.contended.to_string(),
            micros(node.stats.wait_p99_us),
            micros(node.stats.hold_p99_us),
            node.stats.log_len.to_string(),
        ]),
    });
    Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Min(8),
        ],
    )
    .header(bold_header(&[
        "node",
        "held",
        "waiting",
        "contended",
        "wait p99",
        "hold p99",
        "log",
    ]))
    .block(
        Block::new()
            .borders(Borders::ALL)
            .title(" nodes (exclusive holds) "),
    )
}

fn top_table(nodes: &[NodeView]) -> Table<'static> {
    let mut hot: Vec<(&str, &crate::model::HotKey)> = nodes
        .iter()
        .flat_map(|node| node.top.iter().map(move |key| (node.addr.as_str(), key)))
        .collect();
    hot.sort_by(|a, b| b.1.weight.cmp(&a.1.weight).then(a.1.key.cmp(&b.1.key)));
    let rows = hot.into_iter().map(|(addr, key)| {
        Row::new(vec![
            key.key.clone(),
            addr.to_string(),
            key.weight.to_string(),
            key.contended.to_string(),
            key.waiters.to_string(),
            ms(key.wait_p99_ms),
            ms(key.longest_hold_ms),
            key.timeouts.to_string(),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(22),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(bold_header(&[
        "key",
        "node",
        "weight",
        "contended",
        "waiting",
        "wait p99",
        "held now",
        "timeouts",
    ]))
    .block(Block::new().borders(Borders::ALL).title(" hottest locks "))
}

fn log_table(nodes: &[NodeView]) -> Table<'static> {
    let mut entries: Vec<(&str, &crate::model::LogEntry)> = nodes
        .iter()
        .flat_map(|node| {
            node.log
                .iter()
                .map(move |entry| (node.addr.as_str(), entry))
        })
        .collect();
    entries.sort_by(|a, b| b.1.time_ms.cmp(&a.1.time_ms).then(b.1.id.cmp(&a.1.id)));
    let rows = entries.into_iter().map(|(addr, entry)| {
        Row::new(vec![
            clock(entry.time_ms),
            entry.reason.clone(),
            entry.key.clone(),
            entry.owner.clone(),
            entry.token.to_string(),
            ms(entry.ms),
            addr.to_string(),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(17),
            Constraint::Min(14),
            Constraint::Min(12),
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(22),
        ],
    )
    .header(bold_header(&[
        "time", "reason", "key", "owner", "token", "ms", "node",
    ]))
    .block(
        Block::new()
            .borders(Borders::ALL)
            .title(" lock log (newest first) "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HotKey, LockStats, LogEntry};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(nodes: &[NodeView], status: &Status) -> String {
        let mut terminal = Terminal::new(TestBackend::new(130, 30)).expect("a test terminal");
        terminal
            .draw(|frame| draw(frame, nodes, status))
            .expect("drawn");
        let buffer = terminal.backend().buffer().clone();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn node(addr: &str, hot: &[(&str, u64)], log: &[(&str, &str, i64)]) -> NodeView {
        NodeView {
            addr: addr.into(),
            stats: LockStats {
                held: 5,
                waiters: 2,
                contended: 9,
                log_len: log.len() as u64,
                wait_p99_us: Some(1500.0),
                hold_p99_us: None,
            },
            top: hot
                .iter()
                .map(|(key, weight)| HotKey {
                    key: key.to_string(),
                    weight: *weight,
                    ..HotKey::default()
                })
                .collect(),
            log: log
                .iter()
                .map(|(reason, key, time_ms)| LogEntry {
                    reason: reason.to_string(),
                    key: key.to_string(),
                    owner: "worker-7".into(),
                    time_ms: *time_ms,
                    ..LogEntry::default()
                })
                .collect(),
            error: None,
        }
    }

    fn line_of(screen: &str, needle: &str) -> usize {
        screen
            .lines()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{screen}"))
    }

    #[test]
    fn merges_hot_keys_by_weight_and_the_log_newest_first() {
        let nodes = [
            node(
                "127.0.0.1:7000",
                &[("cold", 3), ("hot", 90)],
                &[("expired", "jobs:1", 1000)],
            ),
            node(
                "127.0.0.1:7001",
                &[("warm", 40)],
                &[("deleted", "jobs:2", 5000)],
            ),
        ];
        let status = Status {
            refreshed: "12:00:01".into(),
            paused: false,
        };
        let shown = screen(&nodes, &status);
        assert!(shown.contains("2 nodes"), "{shown}");
        assert!(shown.contains("refreshed 12:00:01"), "{shown}");
        assert!(line_of(&shown, "hot ") < line_of(&shown, "warm"));
        assert!(line_of(&shown, "warm") < line_of(&shown, "cold"));
        assert!(line_of(&shown, "jobs:2") < line_of(&shown, "jobs:1"));
        assert!(shown.contains("1ms"), "{shown}");
        assert!(shown.contains("worker-7"));
        assert!(!shown.contains("PAUSED"));
    }

    #[test]
    fn an_unreachable_node_says_so_and_pause_shows() {
        let mut down = node("127.0.0.1:7002", &[], &[]);
        down.error = Some("Connection refused".into());
        let shown = screen(
            &[down],
            &Status {
                refreshed: "00:00:00".into(),
                paused: true,
            },
        );
        assert!(shown.contains("unreachable: Connection refused"), "{shown}");
        assert!(shown.contains("PAUSED"));
        assert!(shown.contains("1 node "));
    }

    #[test]
    fn durations_and_clock() {
        assert_eq!(ms(950), "950ms");
        assert_eq!(ms(30_000), "30.0s");
        assert_eq!(micros(None), "-");
        assert_eq!(micros(Some(250.0)), "250us");
        assert_eq!(micros(Some(2_500.0)), "2ms");
        assert_eq!(clock(3_723_000), "01:02:03");
        assert_eq!(clock(86_400_000 + 1000), "00:00:01");
    }
}
