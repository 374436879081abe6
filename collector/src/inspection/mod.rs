//! Inspections (巡检) and security self-checks (安全自查): plans, runs,
//! the filed records.

pub mod record;
