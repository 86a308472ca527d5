//! The study's journal, as the store's file backend keeps it (`store::file`):
//! re-exported here for the readers that knew it by this name.

pub use crate::store::file::{read, Journal, JournalError};
