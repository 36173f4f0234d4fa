//! One integration-test binary: every test drives the real `custodian`
//! binary in a temporary folder.

mod check;
mod check_property;
mod cli;
mod corpus;
mod corpus_repair;
mod diagnose;
mod fleet;
mod header;
mod hooks;
mod html;
mod kinds;
mod large;
mod own_checks;
mod papercuts;
mod parity;
mod preflight;
mod reader;
mod refused;
mod repair;
mod repair_in_place;
mod repair_io;
mod repair_kinds;
mod repair_ladder;
mod repair_load;
mod repair_more;
mod repair_ops;
mod repair_property;
mod repair_rebuild;
mod reports;
mod salvage;
mod snapshot;
mod summary;
mod support;
mod upgrade;
mod without_rowid;
