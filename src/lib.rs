//! servetune: finds the best settings of a model-serving stack by experiment.
//!
//! The modules follow the pipeline (see DESIGN.md): `config` edits the
//! server's files losslessly, `server` runs and reconfigures the server,
//! `apply` ties the two together with rollback, `study` runs the tuning loop
//! and `store` keeps its trials (a file journal or a shared PostgreSQL),
//! `cli` is the command line.

pub mod apply;
pub mod bench;
pub mod cert_check;
pub mod cli;
pub mod compare;
pub mod config;
pub mod daemon;
pub mod landscape;
pub mod load;
pub mod measure;
pub mod objective;
pub mod replay;
pub mod report;
pub mod search;
pub mod server;
pub mod space;
pub mod store;
pub mod study;
pub mod trial;
