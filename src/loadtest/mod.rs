//! `flashstock loadtest`: load scenarios of a flash sale against any running
//! flashstock (`drop`, `hot`, `coupons`, `spread`), with a progress bar, a
//! summary table (or JSON) and a verdict on correctness. The driver in `client`
//! is also what the flash-sale comparison bench uses.

pub mod client;
pub mod report;
pub mod scenario;

pub use client::{Budget, Endpoint, Progress, Stats};
pub use report::{Report, Verdict};
pub use scenario::{LoadtestArgs, run};
