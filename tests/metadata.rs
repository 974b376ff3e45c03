//! Command metadata (issue 9, point 6): what COMMAND INFO, COMMAND DOCS, COMMAND
//! GETKEYSANDFLAGS and ACL CAT say of the LOCK commands, on every server. Expectations branch
//! only on whether the server has the module API for ACL categories, which rlock logs at load.

mod common;

use common::*;
use redis::Value;

/// What the server offers for ACL categories, by its version.
struct AclSupport {
    /// `RedisModule_SetCommandACLCategories` (Redis 7.2+, Valkey).
    categories: bool,
    /// `RedisModule_AddACLCategory` (Redis 7.4+, Valkey 8+): the `@lock` category.
    own_category: bool,
}

fn acl_support(server: &Server) -> AclSupport {
    // From the server's version (RedisModule_SetCommandACLCategories came with Redis 7.2,
    // RedisModule_AddACLCategory with 7.4; Valkey has both), not from what rlock logs: a
    // module that skipped both the call and its log line must still fail here.
    let support = match server.redis_version() {
        None => AclSupport {
            categories: true,
            own_category: true,
        },
        Some(version) => AclSupport {
            categories: version >= (7, 2),
            own_category: version >= (7, 4),
        },
    };
    // And rlock says why a category is missing where the server lacks the call.
    let log = server.log();
    assert_eq!(
        !log.contains("no RedisModule_SetCommandACLCategories"),
        support.categories
    );
    assert_eq!(
        !log.contains("no RedisModule_AddACLCategory"),
        support.own_category
    );
    support
}

struct Expected {
    name: &'static str,
    flags: &'static [&'static str],
    acl: &'static [&'static str],
    arity: i64,
    /// (first, last, step) of the legacy key position.
    keys: (i64, i64, i64),
    /// GETKEYSANDFLAGS of a call: the key's flags (empty: no key).
    key_flags: &'static [&'static str],
    call: &'static [&'static str],
}

const EXPECTED: &[Expected] = &[
    Expected {
        name: "lock.acquire",
        flags: &["write", "denyoom", "module", "blocking", "fast"],
        acl: &["@write", "@fast", "@blocking"],
        arity: -4,
        keys: (1, 1, 1),
        key_flags: &["RW", "access", "update"],
        call: &["k", "me", "1000", "WAIT", "10"],
    },
    Expected {
        name: "lock.reenter",
        flags: &["write", "module", "fast"],
        acl: &["@write", "@fast"],
        arity: -3,
        keys: (1, 1, 1),
        key_flags: &["RW", "access", "update"],
        call: &["k", "me"],
    },
    Expected {
        name: "lock.release",
        flags: &["write", "module", "fast"],
        acl: &["@write", "@fast"],
        arity: -3,
        keys: (1, 1, 1),
        key_flags: &["RW", "access", "delete"],
        call: &["k", "me"],
    },
    Expected {
        name: "lock.renew",
        flags: &["write", "module", "fast"],
        acl: &["@write", "@fast"],
        arity: 4,
        keys: (1, 1, 1),
        key_flags: &["RW", "update"],
        call: &["k", "me", "1000"],
    },
    Expected {
        name: "lock.info",
        flags: &["readonly", "module", "fast"],
        acl: &["@read", "@fast"],
        arity: 2,
        keys: (1, 1, 1),
        key_flags: &["RO", "access"],
        call: &["k"],
    },
    // Issue 21: what the locks are doing; read-only but LOCK.LOGRESET.
    Expected {
        name: "lock.log",
        flags: &["readonly", "module", "loading", "stale"],
        acl: &["@read", "@slow"],
        arity: -2,
        keys: (0, 0, 0),
        key_flags: &[],
        call: &[],
    },
    Expected {
        name: "lock.logreset",
        flags: &["admin", "module", "loading", "stale"],
        acl: &["@admin", "@dangerous", "@slow"],
        arity: 1,
        keys: (0, 0, 0),
        key_flags: &[],
        call: &[],
    },
    Expected {
        name: "lock.lost",
        flags: &["readonly", "module", "fast"],
        acl: &["@read", "@fast"],
        arity: 3,
        keys: (1, 1, 1),
        key_flags: &["RO", "access"],
        call: &["k", "me"],
    },
    Expected {
        name: "lock.top",
        flags: &["readonly", "module"],
        acl: &["@read", "@slow"],
        arity: -1,
        keys: (0, 0, 0),
        key_flags: &[],
        call: &[],
    },
    Expected {
        name: "lock.scan",
        flags: &["readonly", "module"],
        acl: &["@read", "@slow"],
        arity: -2,
        keys: (0, 0, 0),
        key_flags: &[],
        call: &[],
    },
    Expected {
        name: "lock.waiters",
        flags: &["readonly", "module"],
        acl: &["@read", "@slow"],
        arity: -2,
        keys: (1, 1, 1),
        key_flags: &["RO", "access"],
        call: &["k"],
    },
    Expected {
        name: "lock.observe",
        flags: &["readonly", "module", "blocking"],
        acl: &["@read", "@blocking"],
        arity: -2,
        keys: (1, 1, 1),
        key_flags: &["RO", "access"],
        call: &["k", "0", "TIMEOUT", "10"],
    },
    Expected {
        name: "lock.macquire",
        flags: &["write", "denyoom", "module", "blocking", "movablekeys"],
        acl: &["@write", "@blocking"],
        arity: -5,
        keys: (0, 0, 0),
        key_flags: &["RW", "access", "update"],
        call: &["1", "k", "me", "1000", "WAIT", "10"],
    },
    Expected {
        name: "lock.mrelease",
        flags: &["write", "module", "fast", "movablekeys"],
        acl: &["@write", "@fast"],
        arity: -4,
        keys: (0, 0, 0),
        key_flags: &["RW", "access", "delete"],
        call: &["1", "k", "me"],
    },
    Expected {
        name: "lock.mrenew",
        flags: &["write", "module", "fast", "movablekeys"],
        acl: &["@write", "@fast"],
        arity: -5,
        keys: (0, 0, 0),
        key_flags: &["RW", "update"],
        call: &["1", "k", "me", "1000"],
    },
    Expected {
        name: "lock.help",
        flags: &["module", "loading", "stale", "fast"],
        acl: &["@fast"],
        arity: 1,
        keys: (0, 0, 0),
        key_flags: &[],
        call: &[],
    },
    Expected {
        name: "lock.apply",
        flags: &["write", "module"],
        acl: &["@write"],
        arity: -5,
        keys: (1, 1, 1),
        // Its key is overwritten with a master's state.
        key_flags: &["OW", "update"],
        call: &["k", "HOLDS", "0", "state"],
    },
    Expected {
        name: "lock.tokens",
        flags: &["write", "module"],
        acl: &["@write"],
        arity: 2,
        keys: (0, 0, 0),
        key_flags: &[],
        call: &["1"],
    },
];

fn array(value: &Value, what: &str) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items.clone(),
        other => panic!("{what}: expected an array, got {other:?}"),
    }
}

fn texts(value: &Value, what: &str) -> Vec<String> {
    array(value, what)
        .iter()
        .map(|item| text(item).unwrap_or_else(|| panic!("{what}: not text: {item:?}")))
        .collect()
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn strings(items: &[&str]) -> Vec<String> {
    sorted(items.iter().map(|item| item.to_string()).collect())
}

/// A flat field/value array (RESP2 map) as pairs.
fn fields(value: &Value, what: &str) -> Vec<(String, Value)> {
    array(value, what)
        .chunks(2)
        .map(|pair| (text(&pair[0]).unwrap_or_default(), pair[1].clone()))
        .collect()
}

fn field<'a>(map: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value)
}

fn module_commands(con: &mut redis::Connection) -> Vec<String> {
    let reply = call!(con, "COMMAND", "LIST", "FILTERBY", "MODULE", "lock");
    sorted(texts(&reply.unwrap(), "COMMAND LIST"))
}

#[test]
fn command_info_says_what_each_command_does() {
    let server = Server::start();
    let support = acl_support(&server);
    // Every call that sets the metadata succeeded: nothing logged a failure.
    let log = server.log();
    assert!(!log.contains("rlock: cannot"), "{log}");
    let mut con = server.conn();
    for expected in EXPECTED {
        let what = expected.name;
        let reply = call!(&mut con, "COMMAND", "INFO", expected.name).unwrap();
        let info = array(&array(&reply, what)[0], what);
        assert_eq!(text(&info[0]).as_deref(), Some(expected.name));
        assert_eq!(info[1], Value::Int(expected.arity), "{what} arity");
        assert_eq!(
            sorted(texts(&info[2], what)),
            strings(expected.flags),
            "{what} flags"
        );
        let keys = (&info[3], &info[4], &info[5]);
        let (first, last, step) = expected.keys;
        assert_eq!(
            keys,
            (&Value::Int(first), &Value::Int(last), &Value::Int(step)),
            "{what} key position"
        );
        let mut acl = expected.acl.to_vec();
        if support.own_category {
            acl.push("@lock");
        }
        if !support.categories {
            acl.clear();
        }
        assert_eq!(sorted(texts(&info[6], what)), strings(&acl), "{what} ACL");

        if expected.call.is_empty() {
            // Redis 7.0 wants an argument after the name here; LOCK.HELP takes none.
            continue;
        }
        let mut getkeys = redis::cmd("COMMAND");
        getkeys.arg("GETKEYSANDFLAGS").arg(expected.name);
        for arg in expected.call {
            getkeys.arg(*arg);
        }
        match run(&mut con, &getkeys) {
            Ok(reply) => {
                let key = array(&array(&reply, what)[0], what);
                assert_eq!(text(&key[0]).as_deref(), Some("k"), "{what}");
                assert_eq!(
                    sorted(texts(&key[1], what)),
                    strings(expected.key_flags),
                    "{what} key flags"
                );
            }
            Err(error) => {
                assert!(expected.key_flags.is_empty(), "{what}: {error}");
                assert!(error.contains("no key arguments"), "{what}: {error}");
            }
        }
    }
    // Every module command is checked above.
    let listed: Vec<&str> = EXPECTED.iter().map(|expected| expected.name).collect();
    assert_eq!(module_commands(&mut con), strings(&listed));
}

/// The syntax of an argument as the docs write it: `[WAIT timeout]`, `SHARED | LIMIT n`.
fn render(arg: &[(String, Value)]) -> String {
    let name = field(arg, "name").and_then(text).unwrap_or_default();
    let kind = field(arg, "type").and_then(text).unwrap_or_default();
    let token = field(arg, "token").and_then(text);
    let flag = |wanted: &str| {
        field(arg, "flags")
            .map(|flags| texts(flags, "flags").contains(&wanted.to_string()))
            .unwrap_or(false)
    };
    let (optional, multiple) = (flag("optional"), flag("multiple"));
    let inner = match kind.as_str() {
        "pure-token" => token.unwrap_or_default(),
        "oneof" | "block" => {
            let subargs = array(field(arg, "arguments").unwrap(), "subargs");
            let parts: Vec<String> = subargs
                .iter()
                .map(|sub| render(&fields(sub, "subarg")))
                .collect();
            parts.join(if kind == "oneof" { " | " } else { " " })
        }
        _ => match token {
            Some(token) => format!("{token} {name}"),
            None => name,
        },
    };
    let inner = if multiple {
        format!("{inner} [{inner} ...]")
    } else {
        inner
    };
    if optional {
        format!("[{inner}]")
    } else {
        inner
    }
}

#[test]
fn command_docs_match_lock_help_and_say_since_and_complexity() {
    let server = Server::start();
    let mut con = server.conn();
    let help = match call!(&mut con, "LOCK.HELP").unwrap() {
        Value::Array(lines) => lines.iter().filter_map(text).collect::<Vec<_>>(),
        other => panic!("LOCK.HELP: {other:?}"),
    };
    for name in module_commands(&mut con) {
        let reply = call!(&mut con, "COMMAND", "DOCS", &name).unwrap();
        let docs = fields(&array(&reply, &name)[1], &name);
        let doc = |field_name: &str| field(&docs, field_name).and_then(text).unwrap_or_default();
        assert!(!doc("summary").is_empty(), "{name} summary");
        assert_eq!(doc("since"), "0.1.0", "{name}");
        // O(1) for the lock commands; the observing ones say their own (LOCK.LOG GET: O(count)).
        assert!(
            doc("complexity").starts_with("O(") || doc("complexity").starts_with("GET: O("),
            "{name} complexity"
        );
        assert_eq!(doc("group"), "module", "{name}");
        assert_eq!(doc("module"), "lock", "{name}");
        if name == "lock.apply" || name == "lock.tokens" {
            assert!(doc("summary").starts_with("Internal"), "{name}");
            continue;
        }
        // The syntax COMMAND DOCS gives is the one LOCK.HELP prints.
        let args = field(&docs, "arguments").map_or(Vec::new(), |args| array(args, &name));
        let mut syntax = name.to_uppercase();
        for arg in &args {
            syntax.push(' ');
            syntax.push_str(&render(&fields(arg, &name)));
        }
        assert!(
            help.contains(&syntax),
            "{syntax:?} not in LOCK.HELP {help:?}"
        );
    }
}

#[test]
fn acl_category_lock_holds_every_lock_command_where_the_server_allows_one() {
    let server = Server::start();
    let support = acl_support(&server);
    let mut con = server.conn();
    let categories = texts(&call!(&mut con, "ACL", "CAT").unwrap(), "ACL CAT");
    assert_eq!(
        categories.contains(&"lock".to_string()),
        support.own_category
    );
    if !support.own_category {
        let text = error(call!(&mut con, "ACL", "CAT", "lock"), "ACL CAT lock");
        assert!(text.contains("nknown category"), "{text}");
        return;
    }
    let members = sorted(texts(
        &call!(&mut con, "ACL", "CAT", "lock").unwrap(),
        "ACL CAT lock",
    ));
    assert_eq!(members, module_commands(&mut con));

    ok(
        call!(&mut con, "ACL", "SETUSER", "locker", "on", "nopass", "~*", "-@all", "+@lock"),
        "ACL SETUSER",
    );
    let mut locker = server.conn();
    ok(call!(&mut locker, "AUTH", "locker", "any"), "AUTH");
    let token = int(
        call!(&mut locker, "LOCK.ACQUIRE", "k", "me", 10000),
        "ACQUIRE",
    );
    assert!(token > 0);
    assert!(matches!(
        call!(&mut locker, "LOCK.INFO", "k"),
        Ok(Value::Array(_))
    ));
    assert!(matches!(
        call!(&mut locker, "LOCK.HELP"),
        Ok(Value::Array(_))
    ));
    assert_eq!(
        int(call!(&mut locker, "LOCK.RELEASE", "k", "me"), "RELEASE"),
        0
    );
    let text = error(call!(&mut locker, "SET", "k", "v"), "SET as locker");
    assert!(text.starts_with("NOPERM"), "{text}");
}
