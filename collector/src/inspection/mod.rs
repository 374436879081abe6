//! Inspections (巡检) and security self-checks (安全自查): plans, runs,
//! the filed records.

pub mod evidence_source;
pub mod plan;
pub mod record;
pub mod render;
pub mod runner;
