//! The raw-protocol admin client against the real broker.
