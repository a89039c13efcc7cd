//! The node's Rust core: associations as links shared by the threads that use them, services
//! registered on them, the SCP server loop, and the streaming C-STORE data path with its
//! journal. Knows associations (ul) and data sets (codec); knows nothing of Python.
//!
//! Modules depend downwards only: `server` → `services` → `link`; `storage` → `services`,
//! `link`, `journal`, `direct`, `writeback`; `journal` → `uring`, `direct`, `writeback`; `placement` stands alone.
pub mod direct;
pub mod journal;
pub mod link;
pub mod metrics;
pub mod placement;
pub mod server;
pub mod services;
pub mod storage;
mod uring;
pub mod writeback;

pub use journal::{Journal, JournalStats};
pub use link::{
    DataSetSource, Dispatch, FieldValue, Level, Link, LinkGuard, LinkLimits, Message, Outcome,
    Reply, Request,
};
pub use metrics::Metrics;
pub use placement::{Placement, PlacementKeys, Placer, UidFilter};
pub use server::{Hooks, NoHooks, Server, ServerConfig};
pub use services::{FnService, Notices, Service, Services};
pub use storage::{
    peek_file, read_head, store_data_set, store_file, Outgoing, Part10Head, PartPool, Prepared,
    Received, SendError, StorageConfig, StorageService, StoreHandler, StoreRequest, StoreResponse,
    StoreState,
};
