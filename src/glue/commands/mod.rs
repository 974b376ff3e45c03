//! The LOCK.* commands, one file each: its spec (`SPEC`: name, flags, key spec, arity, args,
//! docs, help lines) beside its handler. `ALL` is the one list that registration, `COMMAND
//! DOCS` and LOCK.HELP come from. Every handler runs parse -> now (one clock read, passed down)
//! -> open key -> core decision -> `finish::commit` (store, replicate, reply, notify, count).
//!
//! `holds/`: the commands clients send; `replay/`: the internal ones a master's stream and the
//! AOF send; `help`: LOCK.HELP; `finish`: what they share; `spec`: what a command is.

pub mod finish;
pub mod help;
pub mod holds;
pub mod monitor;
pub mod replay;
pub mod several;
pub mod spec;

use spec::CommandSpec;

/// Every command, in LOCK.HELP's order.
pub static ALL: &[&CommandSpec] = &[
    &holds::acquire::SPEC,
    &holds::reenter::SPEC,
    &holds::release::SPEC,
    &holds::renew::SPEC,
    &holds::info::SPEC,
    &holds::observe::SPEC,
    &monitor::log::SPEC,
    &monitor::log::RESET_SPEC,
    &monitor::lost::SPEC,
    &monitor::top::SPEC,
    &monitor::scan::SPEC,
    &monitor::waiters::SPEC,
    &several::macquire::SPEC,
    &several::mrelease::SPEC,
    &several::mrenew::SPEC,
    &help::SPEC,
    &replay::apply::SPEC,
    &replay::tokens::SPEC,
];
