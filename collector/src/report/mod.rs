//! Periodic ops reports (monthly, quarterly, annual): the numbers
//! (`model`), how they are computed from the store (`compute`), and how they
//! are rendered (`render`).

pub mod model;
