//! Reading the nodes: the seed alone, or every master of its cluster (`CLUSTER NODES`), each
//! with `INFO lock`, `LOCK.TOP` and `LOCK.LOG GET` (all read-only). Connections are kept
//! between refreshes and made anew after an error.

use std::collections::HashMap;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};

use crate::model::{parse_cluster_masters, parse_info, parse_log, parse_top, NodeView};

/// How long a connect or a reply may take before the node shows as unreachable.
const TIMEOUT: Duration = Duration::from_millis(800);

pub struct Fetcher {
    seed: ConnectionInfo,
    connections: HashMap<String, redis::Connection>,
    pub top_count: usize,
    pub log_count: usize,
}

fn addr_text(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => format!("{other:?}"),
    }
}

impl Fetcher {
    pub fn new(url: &str, top_count: usize, log_count: usize) -> redis::RedisResult<Fetcher> {
        Ok(Fetcher {
            seed: url.into_connection_info()?,
            connections: HashMap::new(),
            top_count,
            log_count,
        })
    }

    /// The seed's address, then, in a cluster, every master's instead.
    fn nodes(&mut self) -> Vec<(String, ConnectionInfo)> {
        let seed_addr = addr_text(self.seed.addr());
        let seed = vec![(seed_addr.clone(), self.seed.clone())];
        let Ok(conn) = self.connection(&seed_addr, &self.seed.clone()) else {
            return seed;
        };
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query(conn)
            .unwrap_or_default();
        if !info.contains("cluster_enabled:1") {
            return seed;
        }
        let Ok(nodes) = redis::cmd("CLUSTER").arg("NODES").query::<String>(conn) else {
            return seed;
        };
        let masters = parse_cluster_masters(&nodes);
        if masters.is_empty() {
            return seed;
        }
        masters
            .into_iter()
            .filter_map(|addr| {
                let (host, port) = addr.rsplit_once(':')?;
                let port = port.parse().ok()?;
                let info = self
                    .seed
                    .clone()
                    .set_addr(ConnectionAddr::Tcp(host.to_string(), port));
                Some((addr, info))
            })
            .collect()
    }

    fn connection(
        &mut self,
        addr: &str,
        info: &ConnectionInfo,
    ) -> redis::RedisResult<&mut redis::Connection> {
        if !self.connections.contains_key(addr) {
            let client = redis::Client::open(info.clone())?;
            let conn = client.get_connection_with_timeout(TIMEOUT)?;
            conn.set_read_timeout(Some(TIMEOUT))?;
            conn.set_write_timeout(Some(TIMEOUT))?;
            self.connections.insert(addr.to_string(), conn);
        }
        match self.connections.get_mut(addr) {
            Some(conn) => Ok(conn),
            None => Err((redis::ErrorKind::Io, "connection vanished").into()),
        }
    }

    /// Every node's view now, in address order.
    pub fn fetch(&mut self) -> Vec<NodeView> {
        let mut nodes = self.nodes();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        nodes
            .into_iter()
            .map(|(addr, info)| match self.read_node(&addr, &info) {
                Ok(view) => view,
                Err(error) => {
                    self.connections.remove(&addr);
                    NodeView {
                        addr,
                        error: Some(error.to_string()),
                        ..NodeView::default()
                    }
                }
            })
            .collect()
    }

    fn read_node(&mut self, addr: &str, info: &ConnectionInfo) -> redis::RedisResult<NodeView> {
        let (top_count, log_count) = (self.top_count, self.log_count);
        let conn = self.connection(addr, info)?;
        let info: String = redis::cmd("INFO").arg("lock").query(conn)?;
        let top: Value = redis::cmd("LOCK.TOP").arg(top_count).query(conn)?;
        let log: Value = redis::cmd("LOCK.LOG")
            .arg("GET")
            .arg(log_count)
            .query(conn)?;
        Ok(NodeView {
            addr: addr.to_string(),
            stats: parse_info(&info),
            top: parse_top(&top),
            log: parse_log(&log),
            error: None,
        })
    }
}
