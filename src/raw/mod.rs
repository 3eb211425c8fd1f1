//! The pieces both sync-map protocols are built from, assuming neither: value
//! cells with comparable, taggable addresses ([`cell`]), retiring what a protocol
//! unlinks ([`retire`]), and the mark for deliberately broken loom builds
//! ([`mutant`]).

pub(crate) mod cell;
pub(crate) mod mutant;
pub(crate) mod retire;
