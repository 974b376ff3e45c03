//! What a command is, besides its handler: the spec each command file declares (name, entry
//! point, flags, ACL categories, arity, key spec, docs, its LOCK.HELP lines), the arguments shared
//! by several commands, and the module API's C arrays that `COMMAND INFO` and `COMMAND DOCS`
//! are built from. The server copies those in `RedisModule_SetCommandInfo`, so they live only
//! for the call.

use std::ffi::{c_int, CStr};

use redis_module::raw::{self, RedisModuleCmdFunc};

/// One command as the server registers it and `COMMAND DOCS` and LOCK.HELP show it.
pub struct CommandSpec {
    pub name: &'static CStr,
    pub entry: RedisModuleCmdFunc,
    /// `write` so CLIENT PAUSE WRITE and read-only replicas hold it; `deny-oom` where it
    /// allocates (a new lock), never on release or renew: a holder must always be able to let
    /// go or keep what it has; `blocking` where it may block the caller (WAIT).
    pub flags: &'static CStr,
    /// ACL categories besides `lock` (servers with module ACL categories only).
    pub acl: &'static CStr,
    /// Counting the command name; negative: at least that many.
    pub arity: c_int,
    /// What the command does to its key (argument 1); 0 for a keyless command.
    pub key_flags: u32,
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub args: &'static [Arg],
    /// Its two LOCK.HELP lines, or `None` for an internal command no client may send.
    pub help: Option<Help>,
}

/// A command's entry in LOCK.HELP: the syntax `COMMAND DOCS` gives (tests/metadata.rs checks
/// the two agree; `ttl` and `timeout` in milliseconds) and one indented line of description.
pub struct Help {
    pub syntax: &'static CStr,
    pub line: &'static CStr,
}

/// Where the commands first appeared (rlock's version).
pub const SINCE: &CStr = c"0.1.0";

pub const KEY: Arg = Arg::key(c"key");
pub const OWNER: Arg = Arg::string(c"owner");
pub const TTL: Arg = Arg::integer(c"ttl");
/// `HELD n`: the caller's hold count before the call, so that a retried call has one effect.
pub const HELD: Arg = Arg {
    name: c"count",
    kind: ArgKind::Integer,
    token: Some(c"HELD"),
    optional: true,
};

/// One argument as `COMMAND DOCS` lists it.
pub struct Arg {
    pub name: &'static CStr,
    pub kind: ArgKind,
    /// The keyword before the value (`WAIT` of `WAIT timeout`), or the token itself.
    pub token: Option<&'static CStr>,
    pub optional: bool,
}

pub enum ArgKind {
    /// The key, described by the command's only key spec.
    Key,
    /// `key [key ...]`: the keys a `numkeys` before them counts (the same key spec).
    Keys,
    String,
    Integer,
    /// A bare keyword (its `token`).
    PureToken,
    /// Exactly one of these.
    OneOf(&'static [Arg]),
}

impl Arg {
    pub const fn key(name: &'static CStr) -> Arg {
        Arg::plain(name, ArgKind::Key)
    }

    pub const fn string(name: &'static CStr) -> Arg {
        Arg::plain(name, ArgKind::String)
    }

    pub const fn integer(name: &'static CStr) -> Arg {
        Arg::plain(name, ArgKind::Integer)
    }

    const fn plain(name: &'static CStr, kind: ArgKind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
        }
    }
}

/// The arguments in the server's layout: each level a zero-terminated array. The inner
/// vectors are kept alive in `_levels` (their heap buffers do not move when the outer one
/// grows), since the server reads them only during `SetCommandInfo`.
pub struct RawArgs {
    top: Vec<raw::RedisModuleCommandArg>,
    _levels: Vec<Vec<raw::RedisModuleCommandArg>>,
}

impl RawArgs {
    pub fn new(args: &[Arg]) -> RawArgs {
        let mut levels = Vec::new();
        let top = raw_level(args, &mut levels);
        RawArgs {
            top,
            _levels: levels,
        }
    }

    /// Null for a command without arguments (as the server expects).
    pub fn as_mut_ptr(&mut self) -> *mut raw::RedisModuleCommandArg {
        if self.top.len() <= 1 {
            std::ptr::null_mut()
        } else {
            self.top.as_mut_ptr()
        }
    }
}

fn raw_level(
    args: &[Arg],
    levels: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
) -> Vec<raw::RedisModuleCommandArg> {
    let mut level: Vec<_> = args.iter().map(|arg| raw_arg(arg, levels)).collect();
    level.push(zeroed_arg());
    level
}

fn raw_arg(
    arg: &Arg,
    levels: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
) -> raw::RedisModuleCommandArg {
    let (type_, subargs) = match arg.kind {
        ArgKind::Key | ArgKind::Keys => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
            None,
        ),
        ArgKind::String => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
            None,
        ),
        ArgKind::Integer => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
            None,
        ),
        ArgKind::PureToken => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
            None,
        ),
        ArgKind::OneOf(choices) => (
            raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
            Some(choices),
        ),
    };
    let subargs = subargs.map_or(std::ptr::null_mut(), |choices| {
        let mut level = raw_level(choices, levels);
        let pointer = level.as_mut_ptr();
        levels.push(level);
        pointer
    });
    let mut optional = if arg.optional {
        raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int
    } else {
        0
    };
    if matches!(arg.kind, ArgKind::Keys) {
        optional |= raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int;
    }
    raw::RedisModuleCommandArg {
        name: arg.name.as_ptr(),
        type_,
        // The one key spec for the key; -1 (none) for the rest.
        key_spec_index: if matches!(arg.kind, ArgKind::Key | ArgKind::Keys) {
            0
        } else {
            -1
        },
        token: arg.token.map_or(std::ptr::null(), CStr::as_ptr),
        summary: std::ptr::null(),
        since: std::ptr::null(),
        flags: optional,
        deprecated_since: std::ptr::null(),
        subargs,
        display_text: std::ptr::null(),
    }
}

fn zeroed_arg() -> raw::RedisModuleCommandArg {
    // SAFETY: an all-zero argument (null name) is the documented terminator.
    unsafe { std::mem::zeroed() }
}

/// A `key_flags` bit of rlock's own (above the server's): the keys are `numkeys key [key
/// ...]` from argument 1, as LMPOP's, not one key at argument 1.
pub const KEYS_AFTER_NUMKEYS: u32 = 1 << 31;

/// The key spec array: one key at argument 1 with `flags`, the keys counted by a `numkeys` at
/// argument 1 (KEYS_AFTER_NUMKEYS), or none for a keyless command.
pub fn key_specs(flags: u32) -> [raw::RedisModuleCommandKeySpec; 2] {
    if flags == 0 {
        [zeroed_key_spec(), zeroed_key_spec()]
    } else if flags & KEYS_AFTER_NUMKEYS != 0 {
        [
            keys_after_numkeys(flags & !KEYS_AFTER_NUMKEYS),
            zeroed_key_spec(),
        ]
    } else {
        [key_spec_at_1(flags), zeroed_key_spec()]
    }
}

/// `numkeys` at argument 1, then that many keys (the server finds them, checks ACL on each
/// and refuses keys of different slots with CROSSSLOT).
fn keys_after_numkeys(flags: u32) -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes: std::ptr::null(),
        flags: u64::from(flags),
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_KEYNUM,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            keynum: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_2 {
                keynumidx: 0,
                firstkey: 1,
                keystep: 1,
            },
        },
    }
}

fn key_spec_at_1(flags: u32) -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes: std::ptr::null(),
        flags: u64::from(flags),
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        },
    }
}

/// The terminator of a key spec array.
fn zeroed_key_spec() -> raw::RedisModuleCommandKeySpec {
    // SAFETY: an all-zero key spec is the documented terminator (plain integers and pointers).
    unsafe { std::mem::zeroed() }
}
