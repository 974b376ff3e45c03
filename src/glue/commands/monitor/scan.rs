//! LOCK.SCAN cursor [MATCH pattern] [OWNER owner] [TYPE kind] [COUNT count]: the node's locks
//! in SCAN's manner (the server's own SCAN ... TYPE rlocklock underneath: effects/lock_scan.rs),
//! each with its holders; OWNER and TYPE filter the keys SCAN returned, as SCAN's TYPE does.

use crate::core::monitor::latency::held_ms;
use crate::core::monitor::lock_log::HoldKind;
use crate::core::state::holds::{Holds, Mode};
use crate::core::state::lock;
use crate::glue::commands::monitor::{
    field_bytes, field_int, field_kind, field_u64, monitor_entry, parse_count, reply_array,
};
use crate::glue::commands::spec::{Arg, ArgKind, CommandSpec, Help};
use crate::glue::effects::keys::{OwnedString, ReadKey};
use crate::glue::effects::{lock_scan, token_counter};
use crate::glue::server::context::{now, Ctx};
use crate::glue::waiting::waiters;

const DEFAULT_COUNT: usize = 10;
const MAX_COUNT: usize = 100_000;

const fn option(
    name: &'static std::ffi::CStr,
    token: &'static std::ffi::CStr,
    kind: ArgKind,
) -> Arg {
    Arg {
        name,
        kind,
        token: Some(token),
        optional: true,
    }
}

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.scan",
    entry: Some(scan_entry),
    flags: c"readonly",
    acl: c"read slow",
    arity: -2,
    key_flags: 0,
    summary: c"Iterates the node's locks with a cursor, as SCAN does, each with its holders; filters by pattern, owner and kind",
    complexity: c"O(1) a call, O(N) for a complete iteration (as SCAN)",
    args: &[
        Arg {
            name: c"cursor",
            kind: ArgKind::Integer,
            token: None,
            optional: false,
        },
        option(c"pattern", c"MATCH", ArgKind::String),
        option(c"owner", c"OWNER", ArgKind::String),
        option(c"kind", c"TYPE", ArgKind::String),
        option(c"count", c"COUNT", ArgKind::Integer),
    ],
    help: Some(Help {
        syntax: c"LOCK.SCAN cursor [MATCH pattern] [OWNER owner] [TYPE kind] [COUNT count]",
        line: c"    Iterates the locks as SCAN does (kind: exclusive, shared, limit or session).",
    }),
};

monitor_entry!(scan_entry, "lock.scan", scan);

/// A TYPE filter: a kind of hold, or any session hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KindFilter {
    Kind(HoldKind),
    Session,
}

struct Options<'a> {
    cursor: &'a [u8],
    pattern: Option<&'a [u8]>,
    owner: Option<&'a [u8]>,
    kind: Option<KindFilter>,
    count: usize,
}

fn parse<'a>(args: &[&'a [u8]]) -> Result<Options<'a>, String> {
    let Some((&cursor, mut rest)) = args.split_first() else {
        return Err("wrong number of arguments for 'lock.scan' command".into());
    };
    if cursor.is_empty() || !cursor.iter().all(u8::is_ascii_digit) {
        return Err("LOCK.SCAN: invalid cursor".into());
    }
    let mut options = Options {
        cursor,
        pattern: None,
        owner: None,
        kind: None,
        count: DEFAULT_COUNT,
    };
    while let [name, value, more @ ..] = rest {
        match name.to_ascii_uppercase().as_slice() {
            b"MATCH" => options.pattern = Some(value),
            b"OWNER" => options.owner = Some(value),
            b"TYPE" if value.eq_ignore_ascii_case(b"session") => {
                options.kind = Some(KindFilter::Session)
            }
            b"TYPE" => {
                let kind = HoldKind::parse(value).ok_or(
                    "LOCK.SCAN: TYPE must be exclusive, shared, limit or session".to_string(),
                )?;
                options.kind = Some(KindFilter::Kind(kind));
            }
            b"COUNT" => options.count = parse_count("LOCK.SCAN COUNT", value, MAX_COUNT)?,
            _ => {
                return Err(format!(
                    "LOCK.SCAN: unknown option {}",
                    String::from_utf8_lossy(name)
                ))
            }
        }
        rest = more;
    }
    if !rest.is_empty() {
        return Err("LOCK.SCAN: syntax error (an option without its value)".into());
    }
    Ok(options)
}

fn kind_name(holds: &Holds) -> (&'static str, i64) {
    match holds.mode() {
        Mode::Exclusive => ("exclusive", 0),
        Mode::Shared => ("shared", 0),
        Mode::Limit(n) => ("limit", n.into()),
    }
}

fn wanted(holds: &Holds, options: &Options) -> bool {
    holds.holders.iter().any(|holder| {
        let kind = HoldKind::of_holder(holds.kind, holder.exclusive);
        let owner_ok = options.owner.is_none_or(|owner| *holder.owner == *owner);
        let kind_ok = match options.kind {
            None => true,
            Some(KindFilter::Session) => holder.session.is_some(),
            Some(KindFilter::Kind(want)) => kind == want,
        };
        owner_ok && kind_ok
    })
}

/// LOCK.SCAN cursor ... -> [next cursor, [{key, mode, limit, waiters, holders: [{owner, count,
/// ttl, token, kind, session, held_ms}...]}...]]
fn scan(ctx: Ctx, args: &[&[u8]]) -> Result<(), String> {
    let options = parse(args)?;
    let page = lock_scan::page(ctx, options.cursor, options.pattern, options.count as u64)
        .ok_or("LOCK.SCAN: invalid cursor")?;
    let now = now();
    let db = ctx.selected_db();
    let mut found = Vec::new();
    for key in page.keys {
        let name = OwnedString::new(ctx, &key);
        let mut lock_key = ReadKey::open(ctx, name.as_ptr());
        let Ok(Some(mut holds)) = lock_key.holds() else {
            continue;
        };
        holds.expire(now);
        if !holds.is_free() && wanted(&holds, &options) {
            found.push((key, holds));
        }
    }
    let leads = token_counter::leads();
    reply_array(ctx, 2);
    ctx.reply_bytes(&page.cursor);
    reply_array(ctx, found.len());
    for (key, holds) in found {
        let (mode, limit) = kind_name(&holds);
        ctx.reply_map(5);
        field_bytes(ctx, c"key", &key);
        field_bytes(ctx, c"mode", mode.as_bytes());
        field_int(ctx, c"limit", limit);
        field_u64(ctx, c"waiters", waiters::queued(db, &key) as u64);
        ctx.reply_simple(c"holders");
        reply_array(ctx, holds.holders.len());
        for holder in &holds.holders {
            ctx.reply_map(7);
            field_bytes(ctx, c"owner", &holder.owner);
            field_int(ctx, c"count", holder.count.into());
            let ttl = holder.expires_at.map_or(-1, |at| lock::ttl_left(at, now));
            field_int(ctx, c"ttl", ttl);
            field_u64(ctx, c"token", holder.token);
            field_kind(ctx, HoldKind::of_holder(holds.kind, holder.exclusive));
            field_int(ctx, c"session", holder.session.is_some().into());
            field_u64(ctx, c"held_ms", held_ms(holder.token, &leads, now));
        }
    }
    Ok(())
}
