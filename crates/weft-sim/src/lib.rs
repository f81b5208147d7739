//! weft-sim: deterministic simulator (to be written).
#![forbid(unsafe_code)]
