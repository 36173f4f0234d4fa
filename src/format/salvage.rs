//! Salvage (being written).
