//! servetune: finds the best settings of a model-serving stack by experiment.
//!
//! The modules follow the pipeline (see DESIGN.md): `config` edits the
//! server's files losslessly, `server` runs and reconfigures the server,
//! `apply` ties the two together with rollback, `study` runs the tuning loop
//! and `store` keeps its trials (a file journal or a shared PostgreSQL),
//! `cli` is the command line.
//!
//! Data flows forward only: the modules stand on floors, and a module
//! imports its own floor's modules and lower ones, never a higher one
//! (`tests/layout.rs` checks it, with the same table). Lowest first:
//!
//! | floor | modules |
//! |---|---|
//! | 0 | `stats`, `machine`, `signals`, `cert_check` (leaves) |
//! | 1 | `config`, `space` |
//! | 2 | `objective` |
//! | 3 | `search`, `trial`, `measure` |
//! | 4 | `load` |
//! | 5 | `server`, `store` |
//! | 6 | `apply`, `bench`, `landscape`, `predict` |
//! | 7 | `report` |
//! | 8 | `study` |
//! | 9 | `replay`, `compare` |
//! | 10 | `daemon` |
//! | 11 | `cli` |

pub mod apply;
pub mod bench;
pub mod cert_check;
pub mod cli;
pub mod compare;
pub mod config;
pub mod daemon;
pub mod landscape;
pub mod load;
pub mod machine;
pub mod measure;
pub mod objective;
pub mod predict;
pub mod replay;
pub mod report;
pub mod search;
pub mod server;
pub mod signals;
pub mod space;
pub mod stats;
pub mod store;
pub mod study;
pub mod trial;
