//! Incidents: what the rules engine raises and operators work on.

pub mod lifecycle;
