//! Collection areas. Each area is a module with a thin platform shim (read a
//! file, call sysinfo, or run a command through `crate::exec`) and pure
//! functions that turn what was read into protocol types, tested on captured
//! real output (fixtures in `agent/testdata/<area>/`, each with its
//! provenance).

pub mod antivirus;
pub mod baseline;
pub mod disks;
mod findings;
pub mod hardware;
pub mod mdstat;
pub mod packages;
pub mod patches;
pub mod plan;
pub mod plugins;
pub mod services;
pub mod smart;
pub mod system;

pub use findings::*;
pub use system::SystemCollector;
