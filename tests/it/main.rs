//! One integration-test binary: every test drives the real `custodian`
//! binary in a temporary folder.

mod check;
mod cli;
mod kinds;
mod corpus;
mod reader;
mod support;
