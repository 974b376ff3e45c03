//! Thin glue between the server and the pure core, one concern a file.

pub mod api;
pub mod commands;
pub mod context;
pub mod datatype;
pub mod entry;
pub mod keys;
pub mod registration;
pub mod replicate;
pub mod token_counter;
