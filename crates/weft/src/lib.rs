//! weft: the daemon and CLI (to be written).
