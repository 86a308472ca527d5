//! The servers under tuning: starting, stopping and restarting TorchServe,
//! waiting until it is ready, and changing settings live through its
//! management API; the TensorZero gateway in front of it (`gateway`) and
//! the stack file that names both (`stack`).
//!
//! Owns process handling and HTTP calls to the server's control APIs. It does
//! not edit config files (that is `config`) and does not decide what to
//! change (that is `apply`, later `study`).

pub mod api;
pub mod auth;
pub mod discover;
pub mod endpoints;
mod error;
pub mod gateway;
pub mod logging;
pub mod process;
pub mod spec;
pub mod stack;
pub mod tls;
pub mod torchserve;

pub use api::{ModelStatus, TorchServeApi};
pub use auth::Keys;
pub use endpoints::Endpoints;
pub use error::ServerError;
pub use spec::{Control, TargetSpec};
pub use torchserve::TorchServe;
