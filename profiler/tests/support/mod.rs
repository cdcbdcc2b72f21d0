//! Code shared by test programs (not a test of its own).

pub mod scope_program;
