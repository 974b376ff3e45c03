//! LOCK.TOKENS (internal): the fencing-token counter raised to a master's.

use crate::core::error::{Command, LockError};
use crate::core::request::parse_tokens;
use crate::glue::commands::finish::{refuse_unless_replayed, replayed_from};
use crate::glue::commands::spec::{Arg, CommandSpec};
use crate::glue::effects::{replicate, token_counter};
use crate::glue::server::context::Ctx;
use crate::glue::server::entry::{command_entry, Args};

pub static SPEC: CommandSpec = CommandSpec {
    name: c"lock.tokens",
    entry: Some(tokens_entry),
    flags: c"write",
    acl: c"write",
    arity: 2,
    key_flags: 0,
    summary: c"Internal: raises the fencing-token counter to a master's (replication and AOF only)",
    complexity: c"O(1)",
    args: &[Arg::integer(c"counter")],
    help: None,
};

command_entry!(tokens_entry, Command::Tokens, tokens);

/// LOCK.TOKENS counter -> OK
///
/// Internal: raises the token counter to a master's. Written to the AOF at every fork, so a
/// rewritten AOF without an RDB preamble still knows the tokens of locks long released.
fn tokens(ctx: Ctx, args: &Args) -> Result<(), LockError> {
    refuse_unless_replayed(ctx, Command::Tokens)?;
    let counter = parse_tokens(args.bytes())?;
    token_counter::take_in(&[counter], "a replayed LOCK.TOKENS", replayed_from(ctx));
    replicate::verbatim(ctx);
    ctx.reply_simple(c"OK");
    Ok(())
}
